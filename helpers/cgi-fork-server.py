# nest-gateway's CGI spawn helper: starts CGI processes on behalf of a Node process.
#
# Why: forking a large Node process (a Nest app with a big heap) costs milliseconds of
# page-table copying on the main thread per request. This small process starts children
# with posix_spawn (clone + exec, no copy of anyone's memory), whose cost does not grow with
# anyone's heap. Measured: 3 to 4 times the requests/s of spawning from Node.
#
# Protocol. Requests on stdin, each a 4-byte big-endian length then that many bytes: fields
# separated by NUL (which no argument or variable can contain):
#   S <id> <streams> <cmd> <cwd> <uid> <gid> <stderr bytes> <nargs> <arg>... <NAME=VALUE>...
# (<uid>/<gid> empty: keep ours; else the child runs as that user/group, no other groups).
# <streams> is "i" and/or "o", or "p" alone: for "i" and "o" this helper connects to the Unix
# socket argv[1] and sends the 12-byte header b"%011d" + i or o; that connection becomes the
# child's stdin/stdout (no "i": /dev/null). With "p" the child's stdout is a pipe this helper
# reads: output that ends within INLINE_BYTES and INLINE_MS of the start comes back whole in
# an O line; otherwise an H line hands the pipe over, and the Node process opens it through
# /proc/<our pid>/fd/<fd> and tells us with a C request that we may close our end.
# The child's stderr is a pipe this helper reads and relays
# in L lines, up to <stderr bytes> (empty: all); the rest is read and dropped, so that the
# script never blocks on it. Replies on stdout:
#   R <python version> <fd>           ready (first line); <fd>: a pipe to try opening, then C 0
#   P <id> <pid>                      started, leader of its own process group
#   O <id> <base64>                   ("p") its whole output
#   H <id> <fd> <base64>              ("p") its output so far; the rest is in our <fd>
#   L <id> <base64>                   error output of the script
#   F <id>                            its error output ended (EOF, or its group is gone)
#   X <id> <code or -1> <signal or 0> <1 if no process of its group is left, else 0>   exited
#   E <id> <reason>                   could not start
# The other request: C <id>, the Node process has opened what an H line handed over.
# Why stderr, and short output, are relayed rather than connected back: an accepted connection
# costs the Node process far more than a line on a pipe it reads anyway (a socket object, an
# accept, a shutdown and a close per request); and long output is handed over rather than
# relayed, so that this helper never copies a big body.
# When stdin closes (the Node process ended or died), every group still running gets SIGTERM.
import binascii
import errno
import math
import os
import select
import signal
import socket
import subprocess
import sys
from time import monotonic

if sys.version_info < (3, 8) or not hasattr(os, 'posix_spawn'):
    sys.stderr.write('nest-gateway CGI helper needs Python 3.8 or later with os.posix_spawn\n')
    sys.exit(3)

# Descriptors our parent leaked to us (without close-on-exec) must not reach scripts.
os.closerange(3, 65536)


class Replies:
    """Our stdout, written in full. A signal (SIGCHLD) can cut a long write short, and the
    TextIOWrapper of an unbuffered stdout (-u) drops what was not written: the rest of an L
    line, and the lines after it with it."""

    def write(self, text):
        view = memoryview(text.encode())
        while view:
            try:
                view = view[os.write(1, view):]
            except BlockingIOError:
                select.select([], [1], [])

    def flush(self):
        pass


SOCKET_PATH = sys.argv[1]
out = Replies()
running = {}  # pid -> request id
relays = {}  # read end of a script's stderr pipe -> Relay
relay_of = {}  # request id -> its Relay's descriptor
# Groups whose leader exited while others of the group lived on, and whose stderr is still
# relayed: request id -> group id. Looked at every GROUP_CHECK_MS; once a group is gone, its
# relay ends (a daemon that left the group may hold the pipe for ever).
lingering = {}
GROUP_CHECK_MS = 250
# Stdout pipes ("p") read here: read end -> Capture; and the read ends handed over, kept open
# until the Node process says it has opened them (request id -> read end).
captures = {}
handed = {}
INLINE_BYTES = 64 * 1024
INLINE_MS = 20
DEVNULL = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
ROOT = os.getcwd()
# A script starts with every signal at its default, as exec from a shell would give it
# (Python ignores SIGPIPE and SIGXFSZ, and an ignored signal stays ignored across exec).
RESET_SIGNALS = [s for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP)]

wake_r, wake_w = os.pipe()
os.set_blocking(wake_r, False)
os.set_blocking(wake_w, False)
signal.set_wakeup_fd(wake_w)
signal.signal(signal.SIGCHLD, lambda *_: None)
poller = select.poll()
poller.register(0, select.POLLIN)
poller.register(wake_r, select.POLLIN)


class Relay:
    __slots__ = ('request_id', 'room')

    def __init__(self, request_id, room):
        self.request_id = request_id
        self.room = room


class Capture:
    __slots__ = ('request_id', 'chunks', 'size', 'deadline')

    def __init__(self, request_id):
        self.request_id = request_id
        self.chunks = []
        self.size = 0
        self.deadline = monotonic() + INLINE_MS / 1000


def capture(fd):
    """Reads a stdout pipe: the whole output goes back in an O line; too much is handed over."""
    state = captures[fd]
    while True:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b''
        if not data:
            end_capture(fd)
            out.write(f'O {state.request_id} {encoded(state.chunks)}\n')
            os.close(fd)
            return
        state.chunks.append(data)
        state.size += len(data)
        if state.size > INLINE_BYTES:
            hand_over(fd)
            return


def hand_over(fd):
    """Stops reading the pipe; the Node process opens it and reads on where we stopped."""
    state = captures[fd]
    end_capture(fd)
    handed[state.request_id] = fd
    out.write(f'H {state.request_id} {fd} {encoded(state.chunks)}\n')


def end_capture(fd):
    del captures[fd]
    poller.unregister(fd)


def encoded(chunks):
    return binascii.b2a_base64(b''.join(chunks), newline=False).decode()


def hand_over_late_captures():
    now = monotonic()
    for fd, state in list(captures.items()):
        if state.deadline <= now:
            hand_over(fd)


def poll_timeout():
    """Milliseconds until the next capture is due or the next group check; None: no limit."""
    timeout = GROUP_CHECK_MS if lingering else None
    if captures:
        due = max(0, math.ceil((min(c.deadline for c in captures.values()) - monotonic()) * 1000))
        timeout = due if timeout is None else min(timeout, due)
    return timeout


def relay(fd, drain=False):
    """Passes on what the script wrote to stderr: one read, or all there is (drain)."""
    state = relays[fd]
    while True:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            if drain:
                end_relay(fd)  # nothing of the group is left to write the rest
            return
        except OSError:
            data = b''
        if not data:
            end_relay(fd)
            return
        if state.room is None or state.room > 0:
            part = data if state.room is None else data[:state.room]
            if state.room is not None:
                state.room -= len(part)
            out.write(f'L {state.request_id} {binascii.b2a_base64(part, newline=False).decode()}\n')
        if not drain:
            return


def end_relay(fd):
    state = relays.pop(fd)
    relay_of.pop(state.request_id, None)
    lingering.pop(state.request_id, None)
    poller.unregister(fd)
    os.close(fd)
    out.write(f'F {state.request_id}\n')


def reap():
    while running:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        request_id = running.pop(pid, None)
        if request_id is None:
            continue
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
        code = -1 if sig else os.WEXITSTATUS(status)
        # Usually nothing of the group is left: Node then has no group to stop (and does not
        # signal a number that a new group may soon reuse).
        try:
            os.killpg(pid, 0)
            alone = 0
        except ProcessLookupError:
            alone = 1
        except OSError:
            alone = 0
        # The last of its stderr first, so that the exit is logged after it.
        if request_id in relay_of:
            if alone:
                relay(relay_of[request_id], drain=True)
            else:
                lingering[request_id] = pid
        out.write(f'X {request_id} {code} {sig} {alone}\n')


def end_relays_of_gone_groups():
    for request_id, group in list(lingering.items()):
        if request_id not in relay_of:
            del lingering[request_id]
            continue
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            del lingering[request_id]
            relay(relay_of[request_id], drain=True)
        except OSError:
            pass


def on_path(program, env):
    """A program named without a path, looked up on the PATH of its own environment (as exec
    in a shell with that environment, Node's spawn and Popen do): posix_spawnp would search
    ours, which is the Node process's."""
    for directory in os.get_exec_path(env):
        candidate = os.path.join(os.fsencode(directory), program)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT))


def spawn_as(program, args, env, cwd, stdio, error_fd, uid, gid):
    """posix_spawn cannot change user: Popen can (it drops groups, then gid, then uid)."""
    if sys.version_info < (3, 9):  # Popen's user, group and extra_groups came with 3.9
        raise OSError(errno.ENOSYS, 'running scripts as another user (uid, gid) needs Python 3.9 or later')
    proc = subprocess.Popen(
        [program] + args,
        executable=program,
        env=env,
        cwd=cwd,
        stdin=stdio[0],
        stdout=stdio[1],
        stderr=error_fd,
        start_new_session=True,
        close_fds=True,
        user=int(uid) if uid else None,
        group=int(gid) if gid else None,
        extra_groups=[] if (uid or gid) else None,
        restore_signals=True,
    )
    proc.returncode = 0  # reaped by reap(), never by Popen
    return proc.pid


def handle(frame):
    if frame.startswith(b'C\0'):
        fd = handed.pop(frame[2:].decode('ascii'), None)
        if fd is not None:
            os.close(fd)
    elif frame.startswith(b'S\0'):
        start(frame)


def start(frame):
    op, request_id, streams, program, cwd, uid, gid, error_bytes, nargs, *rest = frame.split(b'\0')
    request_id = request_id.decode('ascii')
    streams = streams.decode('ascii')
    count = int(nargs)
    env = dict(item.split(b'=', 1) for item in rest[count:])
    sockets = {}
    error_r = error_w = out_r = out_w = -1
    try:
        # Before anything starts: a bad field fails this request, never a running script.
        room = int(error_bytes) if error_bytes else None
        error_r, error_w = os.pipe()
        os.set_blocking(error_r, False)
        for kind in streams.replace('p', ''):
            sock = sockets[kind] = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(SOCKET_PATH)
            sock.sendall(b'%011d%s' % (int(request_id), kind.encode()))
        if 'p' in streams:
            out_r, out_w = os.pipe()
            os.set_blocking(out_r, False)
        stdio = [sockets['i'].fileno() if 'i' in sockets else DEVNULL,
                 sockets['o'].fileno() if 'o' in sockets else out_w if out_w != -1 else DEVNULL]

        actions = [(os.POSIX_SPAWN_DUP2, source, target) for target, source in enumerate(stdio)]
        actions.append((os.POSIX_SPAWN_DUP2, error_w, 2))
        # Single-threaded, so changing our own directory is safe: the child starts in it.
        os.chdir(cwd or ROOT)
        if uid or gid:
            pid = spawn_as(program, rest[:count], env, cwd or ROOT, stdio, error_w, uid, gid)
        else:
            pid = os.posix_spawn(
                program if b'/' in program else on_path(program, env),
                [program] + rest[:count],
                env,
                file_actions=actions,
                setsid=True,
                setsigmask=(),
                setsigdef=RESET_SIGNALS,
            )
        running[pid] = request_id
        relays[error_r] = Relay(request_id, room)
        relay_of[request_id] = error_r
        poller.register(error_r, select.POLLIN)
        error_r = -1
        out.write(f'P {request_id} {pid}\n')
        if out_r != -1:
            captures[out_r] = Capture(request_id)
            poller.register(out_r, select.POLLIN)
            out_r = -1
    except OSError as error:
        reason = (error.strerror or str(error)).replace('\n', ' ')
        out.write(f'E {request_id} {error.errno or 0} {reason}\n')
    except Exception as error:  # e.g. ValueError for a NUL byte: only this request fails
        reason = str(error).replace('\n', ' ')
        out.write(f'E {request_id} 22 {reason}\n')
    finally:
        for sock in sockets.values():
            sock.close()  # the child holds its own copies
        for fd in (error_r, error_w, out_r, out_w):
            if fd != -1:
                os.close(fd)


def serve():
    pending = b''
    while True:
        reap()
        end_relays_of_gone_groups()
        out.flush()
        ready = [fd for fd, _ in poller.poll(poll_timeout())]
        for fd in ready:
            if fd in relays:
                relay(fd)
            elif fd in captures:
                capture(fd)
        hand_over_late_captures()
        if wake_r in ready:
            try:
                os.read(wake_r, 4096)
            except BlockingIOError:
                pass
        if 0 in ready:
            data = os.read(0, 65536)
            if not data:
                return
            pending += data
            while len(pending) >= 4:
                size = int.from_bytes(pending[:4], 'big')
                if len(pending) < 4 + size:
                    break
                frame, pending = pending[4:4 + size], pending[4 + size:]
                handle(frame)


# The Node process tries opening this pipe through /proc before it asks for "p" (request id 0).
probe_r, probe_w = os.pipe()
os.close(probe_w)
handed['0'] = probe_r
out.write('R %d.%d %d\n' % (*sys.version_info[:2], probe_r))
out.flush()
try:
    serve()
except BrokenPipeError:
    pass  # our stdout has no reader: the Node process is gone, as when our stdin closes
finally:
    # However this helper ends, no script it started runs on unwatched (nor what is left of
    # the group of one that exited).
    for pid in [*running, *lingering.values()]:
        try:
            os.killpg(pid, signal.SIGTERM)
        except OSError:
            pass
