"""Independent tasks on a Dask cluster (generate_diverse_data.py's glasses): an embedded local
cluster of worker processes or an existing scheduler, results collected as they finish, Dask's
warnings held back unless something failed, and the connection noise of the shutdown dropped.

Imports dask and distributed: import this module before holding back their warnings (their
import sets up their logging)."""
import contextlib
import logging
import sys

import dask
from distributed import Client, LocalCluster, as_completed


@contextlib.contextmanager
def dask_warnings_held_back():
    """Dask's warnings in this process (the local scheduler and nannies, the client: a worker that
    died and was restarted, ...) are held back: the caller prints them (`show`) if tasks
    failed, and they are printed if the run stops on an error other than Ctrl-C. Dask's errors
    are printed at once (silence_logs=ERROR), and not again."""
    held = []

    class Hold(logging.Handler):
        def emit(self, record):
            if record.levelno < logging.ERROR:
                held.append(self.format(record))

        def show(self):
            for line in held:
                print(line, file=sys.stderr, flush=True)
            held.clear()

    hold = Hold(logging.WARNING)
    hold.setFormatter(logging.Formatter("%(name)s - %(levelname)s - %(message)s"))
    logger = logging.getLogger("distributed")
    logger.addHandler(hold)
    try:
        yield hold
    except Exception:
        hold.show()
        raise
    finally:
        logger.removeHandler(hold)


class ShutdownNoise(logging.Filter):
    """Drops a log record whose exception (or message) is a connection closed under it,
    CommClosedError or tornado's StreamClosedError: what Dask intermittently logs when the
    workers, the scheduler and the client close while a heartbeat or a reply is in flight
    (dask/distributed issues 7192, 3581). Every other record passes. `install` puts it on every
    logging handler of this process (Dask's loggers, asyncio's and tornado's for a task's
    unretrieved error, the last-resort handler), `remove` takes it off again."""
    CLOSED = ("CommClosedError", "StreamClosedError")

    def __init__(self):
        super().__init__()
        self.handlers = set()

    def filter(self, record):
        exc = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else ""
        return not (exc in self.CLOSED or any(n in record.getMessage() for n in self.CLOSED))

    def install(self):
        loggers = [logging.getLogger()] + [logging.getLogger(name) for name in
                                           list(logging.root.manager.loggerDict)]
        self.handlers = {h for lg in loggers for h in lg.handlers} | (
            {logging.lastResort} if logging.lastResort else set())
        for h in self.handlers:
            h.addFilter(self)

    def remove(self):
        for h in self.handlers:
            h.removeFilter(self)
        self.handlers = set()


@contextlib.contextmanager
def shutdown_noise_dropped():
    """A ShutdownNoise, not yet installed: the caller installs it once the results are in, for
    the shutdown of the cluster; it is removed when the context ends."""
    noise = ShutdownNoise()
    try:
        yield noise
    finally:
        noise.remove()


def quiet_worker_shutdown():
    """Run in each worker of the local cluster (client.run) before the cluster closes: the same
    filter on the worker process's handlers (its log goes to this run's stderr); the process
    ends with the cluster."""
    ShutdownNoise().install()


def open_client(stack, scheduler, n_workers):
    """A Dask client entered into the ExitStack `stack` (closed before the cluster, in reverse
    order): of the scheduler at address `scheduler`, or ("") of an embedded local cluster of
    n_workers single-threaded processes that take one task at a time."""
    if scheduler:
        try:
            client = stack.enter_context(Client(scheduler, set_as_default=False))
        except OSError as err:
            raise SystemExit(f"error: no Dask scheduler reached at SCHEDULER={scheduler!r}: "
                             f"{err}")
        threads = client.nthreads()
        print(f"  {scheduler}: {len(threads)} worker(s) now, {sum(threads.values())} "
              f"thread(s) (a worker process makes one glass at a time)", flush=True)
        return client
    stack.enter_context(dask.config.set({
        # a task waits on the scheduler until a worker is free (as in a process pool), never
        # queued behind another on a busy worker (the default, 1.1, sends 2 to each)
        "distributed.scheduler.worker-saturation": 1.0,
        # workers with this process's environment (a pool's): Dask's default sets
        # OMP/MKL/OPENBLAS_NUM_THREADS=1, which would change the Hessian's LAPACK threads
        "distributed.nanny.pre-spawn-environ": {}}))
    cluster = stack.enter_context(LocalCluster(
        n_workers=n_workers, threads_per_worker=1, processes=True,
        dashboard_address=None, silence_logs=logging.ERROR,
        # no memory limit: the default (memory / n_workers) would have the nanny kill a worker
        # making a big glass (its dense Hessian) that the machine can hold
        memory_limit=0))
    return stack.enter_context(Client(cluster, set_as_default=False))


def results_as_finished(client, fn, tasks):
    """Submit fn(args) for each (key, args) of `tasks`, in order, under that key (a new key per
    run: never another run's result), and yield (key, result, None), or (key, None, the
    exception) for a task that failed for good (KilledWorker, CancelledError, an error in fn),
    as they finish. Each result is released once read: a later death of its worker never
    remakes it. fn must be importable by the workers (a module's function, never __main__'s)."""
    pending = as_completed(loop=client.loop)
    for key, args in tasks:
        pending.add(client.submit(fn, args, key=key))
    for future in pending:
        try:
            result = future.result()
        except Exception as err:
            outcome = (future.key, None, err)
        else:
            outcome = (future.key, result, None)
        try:
            yield outcome
        finally:
            future.release()
