# nest-gateway's CGI spawn helper: starts CGI processes on behalf of a Node process.
#
# Why: forking a large Node process (a Nest app with a big heap) costs milliseconds of
# page-table copying on the main thread per request. This small process starts children
# with posix_spawn (clone + exec, no copy of anyone's memory), whose cost does not grow with
# anyone's heap. Measured: 3 to 4 times the requests/s of spawning from Node.
#
# Protocol. Requests on stdin, each a 4-byte big-endian length then that many bytes: fields
# separated by NUL (which no argument or variable can contain):
#   S <id> <streams> <cmd> <cwd> <uid> <gid> <nargs> <arg>... <NAME=VALUE>...
# (<uid>/<gid> empty: keep ours; else the child runs as that user/group, no other groups).
# <streams> is a subset of "ioe": for each, this helper connects to the Unix socket argv[1]
# and sends the 12-byte header b"%011d" + one of i/o/e; that connection becomes the child's
# stdin/stdout/stderr (no "i": /dev/null). Replies on stdout:
#   R <python version>                ready (first line)
#   P <id> <pid>                      started, leader of its own process group
#   X <id> <code or -1> <signal or 0> <1 if no process of its group is left, else 0>   exited
#   E <id> <reason>                   could not start
# When stdin closes (the Node process ended or died), every group still running gets SIGTERM.
import os
import select
import signal
import socket
import subprocess
import sys

if sys.version_info < (3, 8) or not hasattr(os, 'posix_spawn'):
    sys.stderr.write('nest-gateway CGI helper needs Python 3.8 or later with os.posix_spawn\n')
    sys.exit(3)

# Descriptors our parent leaked to us (without close-on-exec) must not reach scripts.
os.closerange(3, 65536)

SOCKET_PATH = sys.argv[1]
out = sys.stdout
running = {}  # pid -> request id
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
        out.write(f'X {request_id} {code} {sig} {alone}\n')


def spawn_as(program, args, env, cwd, sockets, uid, gid):
    """posix_spawn cannot change user: Popen can (it drops groups, then gid, then uid)."""
    def fd(kind):
        return sockets[kind].fileno() if kind in sockets else DEVNULL
    proc = subprocess.Popen(
        [program] + args,
        executable=program,
        env=env,
        cwd=cwd,
        stdin=fd('i'),
        stdout=fd('o'),
        stderr=fd('e'),
        start_new_session=True,
        close_fds=True,
        user=int(uid) if uid else None,
        group=int(gid) if gid else None,
        extra_groups=[] if (uid or gid) else None,
        restore_signals=True,
    )
    proc.returncode = 0  # reaped by reap(), never by Popen
    return proc.pid


def start(frame):
    op, request_id, streams, program, cwd, uid, gid, nargs, *rest = frame.split(b'\0')
    if op != b'S':
        return
    request_id = request_id.decode('ascii')
    streams = streams.decode('ascii')
    count = int(nargs)
    env = dict(item.split(b'=', 1) for item in rest[count:])
    sockets = {}
    try:
        for kind in streams:
            sock = sockets[kind] = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(SOCKET_PATH)
            sock.sendall(b'%011d%s' % (int(request_id), kind.encode()))

        actions = []
        for target, kind in enumerate('ioe'):
            source = sockets[kind].fileno() if kind in sockets else DEVNULL
            actions.append((os.POSIX_SPAWN_DUP2, source, target))
        # Single-threaded, so changing our own directory is safe: the child starts in it.
        os.chdir(cwd or ROOT)
        if uid or gid:
            pid = spawn_as(program, rest[:count], env, cwd or ROOT, sockets, uid, gid)
        else:
            launch = os.posix_spawn if b'/' in program else os.posix_spawnp
            pid = launch(
                program,
                [program] + rest[:count],
                env,
                file_actions=actions,
                setsid=True,
                setsigmask=(),
                setsigdef=RESET_SIGNALS,
            )
        running[pid] = request_id
        out.write(f'P {request_id} {pid}\n')
    except OSError as error:
        reason = (error.strerror or str(error)).replace('\n', ' ')
        out.write(f'E {request_id} {error.errno or 0} {reason}\n')
    except Exception as error:  # e.g. ValueError for a NUL byte: only this request fails
        reason = str(error).replace('\n', ' ')
        out.write(f'E {request_id} 22 {reason}\n')
    finally:
        for sock in sockets.values():
            sock.close()  # the child holds its own copies


out.write('R %d.%d\n' % sys.version_info[:2])
out.flush()
pending = b''
while True:
    reap()
    out.flush()
    try:
        ready = select.select([0, wake_r], [], [])[0]
    except InterruptedError:
        continue
    if wake_r in ready:
        try:
            os.read(wake_r, 4096)
        except BlockingIOError:
            pass
    if 0 in ready:
        data = os.read(0, 65536)
        if not data:
            break
        pending += data
        while len(pending) >= 4:
            size = int.from_bytes(pending[:4], 'big')
            if len(pending) < 4 + size:
                break
            frame, pending = pending[4:4 + size], pending[4 + size:]
            start(frame)
for pid in running:
    try:
        os.killpg(pid, signal.SIGTERM)
    except OSError:
        pass
