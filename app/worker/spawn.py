"""Low-level process handling: posix_spawn into a new session, pidfd exit watch, group kill.

``os.posix_spawn`` + ``os.pidfd_open`` measured ~1,400 spawns/s here against ~1,100/s for
``asyncio.create_subprocess_exec``, which pays for pipes and a transport per process.
``os.posix_spawn`` cannot change directory, so a program exec'd in its scratch dir (a simple
command, see simple.py) goes through the vfork with ``cwd`` that ``subprocess.Popen`` uses.
"""

from __future__ import annotations

import asyncio
import os
import select
import signal
import sys
import weakref
from _posixsubprocess import fork_exec as _fork_exec
from collections.abc import Callable, Mapping
from typing import Any, Protocol

_LOG_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
_STDIN_DEVNULL = (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)
_STDERR_TO_STDOUT = (os.POSIX_SPAWN_DUP2, 1, 2)
_EXIT_255 = 255 << 8
# Python ignores SIGPIPE and SIGXFSZ; a job must start with the defaults, as in a shell.
_DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)
_FS_ENCODING = sys.getfilesystemencoding()
_FS_ERRORS = sys.getfilesystemencodeerrors()


def spawn(executable: str, argv: list[str], env: Mapping[str, str], *, log_path: str) -> int:
    """Start ``argv`` as the leader of a new session (so of its own process group).

    stdin is /dev/null; stdout and stderr go to ``log_path``. Raises OSError if it cannot start.
    """
    file_actions = [
        _STDIN_DEVNULL,
        (os.POSIX_SPAWN_OPEN, 1, log_path, _LOG_FLAGS, 0o644),
        _STDERR_TO_STDOUT,
    ]
    return os.posix_spawn(
        executable,
        argv,
        env,
        file_actions=file_actions,
        setsid=True,
        setsigdef=_DEFAULT_SIGNALS,
        setsigmask=(),
    )


def spawn_in(
    executable: str, argv: list[str], env: Mapping[str, str], *, cwd: str, log_path: str
) -> int:
    """``spawn``, but with ``cwd`` as the working directory; OSError if it cannot start.

    What ``subprocess.Popen(..., cwd=cwd, start_new_session=True, restore_signals=True)``
    does, without its Python around the call (a third of the agent's CPU per no-op job):
    its ``fork_exec`` (vfork, chdir, setsid, dup2s, exec), and its pipe on which a child
    that cannot chdir or exec writes why before it exits.
    """
    if "=" in "".join(env):
        raise ValueError("illegal environment variable name")
    # NAME=value as os.fsencode encodes it, without a Python call per variable
    env_list = [f"{name}={value}".encode(_FS_ENCODING, _FS_ERRORS) for name, value in env.items()]
    log_fd = os.open(log_path, _LOG_FLAGS | os.O_CLOEXEC, 0o644)
    try:
        error_read, error_write = _error_pipe()
    except OSError:
        os.close(log_fd)
        raise
    try:
        try:
            pid = _fork_exec(
                argv,
                (os.fsencode(executable),),
                False,  # close_fds: the worker's own descriptors are all close-on-exec
                (error_write,),
                cwd,
                env_list,
                _devnull(),  # stdin
                -1,
                -1,
                log_fd,  # stdout
                -1,
                log_fd,  # stderr
                error_read,
                error_write,
                True,  # restore_signals: SIGPIPE and SIGXFSZ back to their defaults
                True,  # call_setsid
                *_FORK_EXEC_TAIL,
            )
        finally:
            os.close(error_write)
            os.close(log_fd)
        error = b""  # end of file at once when the exec succeeds (the pipe is close-on-exec)
        while (chunk := os.read(error_read, 4096)) and len(error) < 50_000:
            error += chunk
    finally:
        os.close(error_read)
    if error:
        os.waitpid(pid, 0)  # it exited, code 255
        raise _child_error(error, cwd=cwd, executable=executable)
    return pid


_DEVNULL_FD: list[int] = []


def _devnull() -> int:
    if not _DEVNULL_FD:
        _DEVNULL_FD.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
    return _DEVNULL_FD[0]


# fork_exec's arguments after call_setsid: no process group, gid, groups, uid or umask to set,
# no preexec_fn, and (before 3.14, which dropped the flag and always may) vfork allowed.
_FORK_EXEC_TAIL: tuple[Any, ...] = (-1, None, None, None, -1, None)
if sys.version_info < (3, 14):
    _FORK_EXEC_TAIL += (True,)


def _error_pipe() -> tuple[int, int]:
    """A close-on-exec pipe whose write end is not stdin, stdout or stderr (dup2 targets)."""
    read_fd, write_fd = os.pipe()
    low_fds = []
    while write_fd < 3:  # only when the worker runs with 0-2 closed
        low_fds.append(write_fd)
        write_fd = os.dup(write_fd)
    for fd in low_fds:
        os.close(fd)
    return read_fd, write_fd


def _child_error(data: bytes, *, cwd: str, executable: str) -> OSError:
    """The OSError a child reported as ``ExceptionName:hex errno:description``, as Popen."""
    try:
        _name, hex_errno, description = data.split(b":", 2)
        errno_num = int(hex_errno, 16)
    except ValueError:
        return OSError(f"bad exception data from child: {data!r}")
    if not errno_num:
        return OSError(description.decode(errors="replace"))
    # "noexec": it failed before exec, in 3.11 (which does not say where) always at chdir
    filename = cwd if description.startswith(b"noexec") else executable
    return OSError(errno_num, os.strerror(errno_num), filename)


class ExitWatch:
    """Calls ``on_exit(wait_status)`` once a spawned process ends, reaping it.

    The leader is still a zombie when the pidfd turns readable, so its pid cannot have been
    reused: that is the moment to SIGKILL whatever it left behind in its process group.
    """

    __slots__ = ("_exits", "_fd", "_on_exit", "pid")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, pid: int, on_exit: Callable[[int], None]
    ) -> None:
        self.pid = pid
        self._on_exit = on_exit
        self._exits = _exits_of(loop)
        self._fd = os.pidfd_open(pid)
        self._exits.add(self._fd, self)

    @property
    def alive(self) -> bool:
        return self._fd >= 0

    def exited(self) -> None:
        """The pidfd is readable: reap the process and report its wait status."""
        self._exits.remove(self._fd)
        os.close(self._fd)
        self._fd = -1
        kill_group(self.pid, signal.SIGKILL)
        try:
            _, status = os.waitpid(self.pid, 0)
        except ChildProcessError:  # reaped elsewhere; report it as a plain failure
            status = _EXIT_255
        self._on_exit(status)


class Holder(Protocol):
    """Something that batches work between ``hold`` and ``release`` (the job guard's lines)."""

    def hold(self) -> None: ...

    def release(self) -> None: ...


def hold_during_exits(loop: asyncio.AbstractEventLoop, holder: Holder) -> None:
    """Hold ``holder`` while the exits seen in one wake-up of ``loop`` are reported."""
    _exits_of(loop).holders.add(holder)


class _ExitPoller:
    """The pidfds of one event loop's watches in an epoll of their own, one reader of the loop.

    Registering each pidfd with the loop (``add_reader``, ``remove_reader``) cost ~10 % of the
    agent's CPU per no-op job in selector bookkeeping; an epoll registration is one C call.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._epoll = select.epoll()  # close-on-exec
        self._watches: dict[int, ExitWatch] = {}
        # weakly: a runner that is gone (a test's, a bench round's) is no longer held
        self.holders: weakref.WeakSet[Holder] = weakref.WeakSet()
        loop.add_reader(self._epoll.fileno(), self._ready)

    def add(self, fd: int, watch: ExitWatch) -> None:
        self._epoll.register(fd, select.EPOLLIN)
        self._watches[fd] = watch

    def remove(self, fd: int) -> None:
        # before the close: a child forked meanwhile by another thread may hold the pidfd
        # until it execs, and would keep an epoll entry of a closed fd number alive
        self._epoll.unregister(fd)
        del self._watches[fd]

    def _ready(self) -> None:
        holders = list(self.holders)
        for holder in holders:
            holder.hold()
        try:
            for fd, _events in self._epoll.poll(0, 64):  # the rest: at the next loop pass
                watch = self._watches.get(fd)
                if watch is not None:
                    watch.exited()
        finally:
            for holder in holders:
                holder.release()


_EXIT_POLLERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _ExitPoller] = (
    weakref.WeakKeyDictionary()
)


def _exits_of(loop: asyncio.AbstractEventLoop) -> _ExitPoller:
    exits = _EXIT_POLLERS.get(loop)
    if exits is None:
        exits = _EXIT_POLLERS[loop] = _ExitPoller(loop)
    return exits


def kill_group(pgid: int, sig: int) -> None:
    """Send ``sig`` to a process group; a group that is already gone is not an error."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def start_guard(python: str, script: str, read_fd: int) -> int:
    """Start the job guard script with ``read_fd`` as its stdin, in a session of its own.

    Its environment is empty and its stdout /dev/null; stderr stays the worker's log.
    """
    file_actions = [
        (os.POSIX_SPAWN_DUP2, read_fd, 0),
        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
    ]
    return os.posix_spawn(
        python, [python, "-I", "-S", script], {}, file_actions=file_actions, setsid=True
    )
