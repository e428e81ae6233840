"""The physics and machinery behind the scripts (docs/architecture.md maps it).

  potentials     pair potentials (smoothed Kob-Andersen LJ, soft spheres) and their derivatives
  system         box, species and parameters of one glass
  neighbours     the periodic pair finder (cubic and general cells) and jax-md neighbour lists
  forces         force kernels of the compiled phases; float64 energy and forces
  dynamics       gradient descent, Brownian dynamics, FIRE; Engine and Fire settings
  hessian        sparse Hessian, lowest modes, softness, vibrality, physics checks
  sparse_solver  multifrontal Cholesky in a nested-dissection order (shift-invert solves)
  jax_config     float64 and the XLA compilation cache

Every setting is an argument; no module reads a script's constants.
"""
