"""Which socket a user other than root finds without $LOCKS_SOCKET, by
liblocks' rule: the system broker when one answers and passes its
checks, else (only with no system socket at all) the per-user one.
Clients run as nobody; $LOCKS_SYSTEM_SOCKET keeps the real /run out of
it.  Needs root, to be nobody and to own the system directory."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import unittest

import locks
from support import Broker

NOBODY = 65534
PKG = os.path.dirname(os.path.abspath(locks.__file__))
PROBE = r'''
import sys, locks
try:
    print('pid', locks.status().pid)
except locks.Untrusted as e:
    print('untrusted', e)
except locks.Unavailable as e:
    print('unavailable', e)
'''


def nobody_python():
    """A Python 3 that nobody may run: this one, else the system's."""
    for exe in (sys.executable, '/usr/bin/python3'):
        try:
            if subprocess.run([exe, '-c', 'pass'], user=NOBODY, group=NOBODY,
                              cwd='/', timeout=30).returncode == 0:
                return exe
        except OSError:
            pass
    return None


@unittest.skipUnless(os.geteuid() == 0, 'needs root, to run as nobody')
class TestDiscovery(unittest.TestCase):
    """Discovery through locks.status() as nobody."""

    @classmethod
    def setUpClass(cls):
        """Find a Python that nobody can run (pyenv's under /root is not)."""
        cls.python = nobody_python()
        if cls.python is None:
            raise unittest.SkipTest('no Python 3 that nobody may run')

    def setUp(self):
        """A root-owned tree nobody may read, with the package copied in."""
        self.tmp = tempfile.mkdtemp(prefix='locks-py-disc.')
        self.addCleanup(shutil.rmtree, self.tmp, True)
        os.chmod(self.tmp, 0o755)
        shutil.copytree(PKG, os.path.join(self.tmp, 'pkg', 'locks'))
        self.sysdir = os.path.join(self.tmp, 'sys')
        os.mkdir(self.sysdir, 0o755)
        self.syssock = os.path.join(self.sysdir, 'locksd.sock')
        self.xdg = os.path.join(self.tmp, 'xdg')
        os.mkdir(self.xdg, 0o700)
        os.chown(self.xdg, NOBODY, NOBODY)
        self.usersock = os.path.join(self.xdg, 'locksd', 'locksd.sock')

    def probe(self, uid=NOBODY):
        """Run the probe as uid; returns its one line of output."""
        env = {'PATH': os.environ.get('PATH', '/usr/bin:/bin'),
               'PYTHONPATH': os.path.join(self.tmp, 'pkg'),
               'LOCKS_SYSTEM_SOCKET': self.syssock,
               'XDG_RUNTIME_DIR': self.xdg}
        out = subprocess.run([self.python, '-c', PROBE], env=env,
                             user=uid, group=uid, cwd='/',
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             timeout=30, check=False)
        return out.stdout.decode().strip()

    def system_broker(self):
        """A broker as root on the system socket (root's 0755 directory)."""
        b = Broker(base=self.tmp, sock=self.syssock)
        self.addCleanup(b.stop)
        return b

    def user_broker(self):
        """nobody's own broker on nobody's per-user socket."""
        b = Broker(base=self.tmp, sock=self.usersock, user=NOBODY,
                   group=NOBODY)
        self.addCleanup(b.stop)
        return b

    def test_system_broker_first(self):
        sysb = self.system_broker()
        self.user_broker()
        self.assertEqual(self.probe(), 'pid %d' % sysb.proc.pid)

    def test_per_user_broker_when_there_is_no_system_socket(self):
        userb = self.user_broker()
        self.assertEqual(self.probe(), 'pid %d' % userb.proc.pid)

    def test_a_dead_system_socket_is_an_error_not_a_fallback(self):
        self.user_broker()
        s = socket.socket(socket.AF_UNIX)
        s.bind(self.syssock)        # bound, never listening: stale
        s.close()
        out = self.probe()
        self.assertTrue(out.startswith('unavailable cannot connect to the '
                                       'system broker at ' + self.syssock),
                        out)
        self.assertIn('it is there but does not answer', out)

    def test_no_broker_names_both_paths(self):
        out = self.probe()
        self.assertTrue(out.startswith('unavailable cannot connect to ' +
                                       self.usersock), out)
        self.assertIn('nor to the system broker at ' + self.syssock, out)
        self.assertIn('locksd', out)

    def test_a_system_directory_others_may_write_is_refused(self):
        self.system_broker()
        self.user_broker()
        os.chmod(self.sysdir, 0o777)
        out = self.probe()
        self.assertEqual(out, 'untrusted %s is writable by others (mode '
                         '0777); refusing to use its socket' % self.sysdir)

    def test_a_system_daemon_run_by_a_stranger_is_refused(self):
        # nobody's daemon binds in its own directory, then root takes the
        # directory: the daemon is neither root nor the directory's owner.
        os.chown(self.sysdir, NOBODY, NOBODY)
        b = Broker(base=self.tmp, sock=self.syssock, user=NOBODY,
                   group=NOBODY)
        self.addCleanup(b.stop)
        os.chown(self.sysdir, 0, 0)
        out = self.probe(uid=12345)
        self.assertTrue(out.startswith('untrusted %s is served by uid %d '
                                       '(pid %d), not by root or the owner '
                                       'of its directory (uid 0)' %
                                       (self.syssock, NOBODY, b.proc.pid)),
                        out)

    def test_a_per_user_socket_of_someone_else_is_refused(self):
        self.user_broker()
        os.chmod(self.xdg, 0o755)       # so that a stranger can see in
        out = self.probe(uid=12345)
        self.assertTrue(out.startswith('untrusted %s is owned by uid %d, '
                                       'not you (12345)' %
                                       (os.path.dirname(self.usersock),
                                        NOBODY)), out)


if __name__ == '__main__':
    unittest.main()
