"""Dynamic apps (docs/vhost.md): an app named per request by the web server's vars, loaded by the worker that
gets the request and kept by that worker, as uWSGI 2.0.21 does (checked against Debian's uwsgi 2.0.21).

The vars, read only from a uwsgi request (tsgi's HTTP router makes HTTP_* vars of client headers, never these):
  UWSGI_SCRIPT   MODULE or MODULE:CALLABLE       first of the three that is set
  UWSGI_MODULE   MODULE, with UWSGI_CALLABLE     (UWSGI_CALLABLE alone loads nothing)
  UWSGI_FILE     a .py/.wsgi file
  UWSGI_CHDIR    directory: chdir before loading, and before each request of that app; put first in sys.path
  UWSGI_PYHOME   virtualenv: its lib/pythonX.Y/site-packages is added to sys.path before loading
Nothing here is imported until a request carries one of them (or an app needs its chdir).
"""
import importlib
import importlib.machinery
import importlib.util
import os
import site
import sys

LOADING_KEYS = ('UWSGI_SCRIPT', 'UWSGI_MODULE', 'UWSGI_FILE')


def describe(environ):
    """What the request asks to load, for log lines: 'UWSGI_SCRIPT=mysite.wsgi', or None if it asks nothing."""
    script = environ.get('UWSGI_SCRIPT')
    if script:
        return 'UWSGI_SCRIPT=' + script
    module = environ.get('UWSGI_MODULE')
    if module:
        callable_name = environ.get('UWSGI_CALLABLE')
        return 'UWSGI_MODULE=' + module + (' UWSGI_CALLABLE=' + callable_name if callable_name else '')
    path = environ.get('UWSGI_FILE')
    if path:
        return 'UWSGI_FILE=' + path
    return None


def _var(environ, key):
    """A var as the name it holds: environ strings are latin-1 (one code point per byte), while uWSGI hands the
    raw bytes to chdir()/open() and to the importer, so a UTF-8 path or module name must be decoded as the file
    system does (os.fsdecode), not taken code point by code point."""
    value = environ.get(key)
    if not value:
        return None
    try:
        return os.fsdecode(value.encode('latin-1'))
    except UnicodeEncodeError:
        return value   # not from a uwsgi packet (an app set it): already text


def load(environ, default_callable):
    """Loads the app the vars name. Returns (callable, chdir or None); raises with a message on failure."""
    chdir = _var(environ, 'UWSGI_CHDIR')
    if chdir is not None:
        chdir = os.path.abspath(chdir)
        os.chdir(chdir)   # raises FileNotFoundError naming the directory
        if chdir not in sys.path:
            # uWSGI's interpreter finds modules in the current directory; here the app's directory is named.
            sys.path.insert(0, chdir)
    home = _var(environ, 'UWSGI_PYHOME')
    if home:
        packages = os.path.join(os.path.abspath(home), 'lib', 'python%d.%d' % sys.version_info[:2], 'site-packages')
        if not os.path.isdir(packages):
            raise ImportError('UWSGI_PYHOME %s has no %s (a virtualenv made with this Python, %d.%d, has one)'
                              % (home, packages, sys.version_info[0], sys.version_info[1]))
        if packages not in sys.path:
            site.addsitedir(packages)
    script = _var(environ, 'UWSGI_SCRIPT')
    if script:
        module, _, callable_name = script.partition(':')
        return _from_module(module, callable_name or default_callable, chdir), chdir
    module = _var(environ, 'UWSGI_MODULE')
    if module:
        return _from_module(module, _var(environ, 'UWSGI_CALLABLE') or default_callable, chdir), chdir
    return _from_file(_var(environ, 'UWSGI_FILE'), default_callable), chdir


def _from_module(name, callable_name, chdir):
    top = name.split('.', 1)[0]
    loaded = sys.modules.get(top)
    if chdir is not None and loaded is not None:
        # One interpreter for every app (uWSGI gives each its own): a module name another app already imported
        # from elsewhere would silently give this request that app's code.
        where = getattr(loaded, '__file__', None)
        if where and not os.path.abspath(where).startswith(chdir + os.sep):
            raise ImportError("module '%s' is already imported from %s, not from UWSGI_CHDIR %s: tsgi runs every app "
                              "in one interpreter, so two apps cannot share a module name (rename one, or run one "
                              "tsgi instance per app)" % (top, where, chdir))
    module = importlib.import_module(name)
    return _callable(module, callable_name, name)


def _from_file(path, callable_name):
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise ImportError('UWSGI_FILE %s does not exist' % path)
    name = 'uwsgi_file_' + ''.join(c if c.isalnum() else '_' for c in path)
    loader = importlib.machinery.SourceFileLoader(name, path)
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return _callable(module, callable_name, path)


def _callable(module, callable_name, where):
    app = getattr(module, callable_name, None)
    if app is None:
        raise ImportError("%s has no callable named '%s'" % (where, callable_name))
    if not callable(app):
        raise ImportError("'%s' in %s is not callable" % (callable_name, where))
    return app
