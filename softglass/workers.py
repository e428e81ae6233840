"""Independent tasks on a pool of spawned processes (JAX is not fork-safe), each worker with its
share of the cores, or in this process when one worker is asked for."""
import contextlib
import multiprocessing as mp
import os


@contextlib.contextmanager
def threads_per_worker(n_workers):
    """Spawned workers start with cores / n_workers BLAS threads (OpenBLAS, MKL, OpenMP) and, at
    one, single-threaded XLA ops. Left at their defaults, 2 workers on 2 cores run 4 BLAS and 4
    XLA threads: the last full run so made took 102 s per direction on average, against 59 s in
    bench_rearrangements.py with one pinned process per core (report 12). The environment is
    restored when the pool is done."""
    threads = max(1, (os.cpu_count() or 1) // n_workers)
    keys = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS", "XLA_FLAGS")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: str(threads) for k in keys[:3]})
    if threads == 1:
        os.environ["XLA_FLAGS"] = f"{saved['XLA_FLAGS'] or ''} --xla_cpu_multi_thread_eigen=false"
    try:
        yield threads
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_tasks(tasks, run, n_workers, initializer, initargs, report, show_progress=True,
              desc="task", unit="task"):
    """run(task) for each task, report(result) as each finishes (in the order they finish), with a
    tqdm bar. With n_workers > 1 and more than one task, on min(n_workers, tasks) spawned
    processes, each started by initializer(*initargs) (a spawned worker imports `run`'s module
    afresh: the initializer gives it what the parent changed, e.g. a script's overrides)."""
    from tqdm import tqdm
    bar = tqdm(total=len(tasks), desc=desc, unit=unit, disable=not show_progress)
    if n_workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            report(run(task))
            bar.update(1)
    else:
        ctx, n = mp.get_context("spawn"), min(n_workers, len(tasks))
        with threads_per_worker(n), ctx.Pool(n, initializer=initializer,
                                             initargs=initargs) as pool:
            for r in pool.imap_unordered(run, tasks):
                report(r)
                bar.update(1)
            pool.close()
            pool.join()
    bar.close()
