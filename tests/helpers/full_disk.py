"""Run a command whose file writes really fail past a size, as on a full
disk: ``RLIMIT_FSIZE`` makes ``write(2)`` fail with ``EFBIG`` (SIGXFSZ,
which would kill the process instead, is ignored)."""
import os
import resource
import signal
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def run_with_file_size_limit(cmd, limit=1 << 20, timeout=300):
    def limit_writes():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [ROOT] + [p for p in [os.environ.get('PYTHONPATH')] if p]))
    return subprocess.run(cmd, capture_output=True, text=True, env=env,
                          preexec_fn=limit_writes, timeout=timeout)
