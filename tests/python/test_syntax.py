"""The package stays Python 3.9: every module parses as 3.9 syntax, and,
when a python3.9 is on PATH, test_seed, test_mutex and test_aio pass
under it."""

import ast
import glob
import os
import shutil
import subprocess
import sys
import unittest

from support import TREE

PACKAGE = os.path.join(TREE, 'client', 'python', 'locks')
HERE = os.path.dirname(os.path.abspath(__file__))


def python39():
    """A python3.9 on PATH that runs (a pyenv shim may not), or None."""
    exe = shutil.which('python3.9')
    if exe is None:
        return None
    try:
        ok = subprocess.run([exe, '-c', 'import sys; assert sys.version_info'
                             '[:2] == (3, 9)'], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return exe if ok.returncode == 0 else None


PYTHON39 = python39()


class TestPython39(unittest.TestCase):
    """Python 3.9 is the oldest the package promises."""

    def test_every_module_parses_as_3_9(self):
        files = sorted(glob.glob(os.path.join(PACKAGE, '*.py')))
        self.assertIn(os.path.join(PACKAGE, '__init__.py'), files)
        for path in files:
            with self.subTest(path=os.path.basename(path)):
                with open(path, encoding='utf-8') as f:
                    src = f.read()
                ast.parse(src, filename=path, feature_version=(3, 9))

    def test_3_9_syntax_check_catches_newer_syntax(self):
        # The check itself works: a match statement (3.10) is refused.
        with self.assertRaises(SyntaxError):
            ast.parse('match x:\n    case 1:\n        pass\n',
                      feature_version=(3, 9))

    @unittest.skipUnless(PYTHON39, 'no working python3.9 on PATH')
    def test_tests_pass_under_python3_9(self):
        env = dict(os.environ)
        env['PYTHONPATH'] = os.path.join(TREE, 'client', 'python')
        env['PYTHONDONTWRITEBYTECODE'] = '1'
        proc = subprocess.run(
            [PYTHON39, '-m', 'unittest', 'test_seed',
             'test_mutex', 'test_aio'], cwd=HERE, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, timeout=150)
        self.assertEqual(proc.returncode, 0,
                         proc.stdout.decode('utf-8', 'replace')[-4000:])


if __name__ == '__main__':
    unittest.main()
