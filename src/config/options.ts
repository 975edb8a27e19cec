/**
 * The option table: the one source of truth for every tsgi option.
 *
 * The command line, ini files, TSGI_* / UWSGI_* environment variables and `--help` are all read through it.
 * Names and semantics are uWSGI's. An option listed here is implemented; `status: 'accepted'` marks an
 * option whose uWSGI purpose tsgi already fulfils by design (its help says how), so configs that carry it keep
 * working. Every other uWSGI option name is known (uwsgi-names.ts) and refused as "not implemented yet".
 */
import { ConfigError } from './errors.js';
import type { Origin } from './origin.js';
import { UWSGI_OPTION_NAMES } from './uwsgi-names.js';

export type OptionKind = 'string' | 'int' | 'bool' | 'mode';
export type OptionStatus = 'implemented' | 'accepted';

export interface OptionDef {
  readonly name: string;
  readonly aliases: readonly string[];
  readonly short?: string;
  readonly kind: OptionKind;
  /** May be given more than once; every value is kept in order. */
  readonly repeat: boolean;
  /** Default, as text (shown by --help, used when the option is absent). */
  readonly default?: string;
  /** The value a bare `--flag` (or `key =` with nothing after it) stands for. */
  readonly implicit?: string;
  readonly choices?: readonly string[];
  readonly min?: number;
  readonly max?: number;
  readonly meta?: string;
  readonly section: Section;
  readonly status: OptionStatus;
  readonly help: string;
  /**
   * Magic variables (%n, %d, ...), $(ENV) and @(file) in this option's value are left as written when a config
   * file is read: the emperor expands them against each vassal's file (vassal-set = socket=/run/%n.sock).
   */
  readonly perVassal?: boolean;
}

export type Section = 'Configuration' | 'Sockets' | 'Processes' | 'Reloading and limits' | 'Applications' | 'Python applications' |
  'Node applications' | 'Static files' | 'Routing' | 'Caching' | 'Logging' | 'Monitoring' | 'Daemons and cron' | 'Emperor';

type Decl = Omit<OptionDef, 'aliases' | 'repeat' | 'status'> & {
  aliases?: readonly string[];
  repeat?: boolean;
  status?: OptionStatus;
};

const declare = (d: Decl): OptionDef => ({ aliases: [], repeat: false, status: 'implemented', ...d });

const bool = (name: string, section: Section, help: string, extra: Partial<Decl> = {}): OptionDef =>
  declare({ name, kind: 'bool', implicit: 'true', default: 'false', section, help, ...extra });

export const OPTIONS: readonly OptionDef[] = [
  // ---- Configuration sources and queries ----
  declare({ name: 'ini', kind: 'string', repeat: true, meta: 'FILE[:SECTION]', section: 'Configuration',
    help: 'read options from the [uwsgi] section (or SECTION) of an ini file; may repeat' }),
  declare({ name: 'set', short: 'S', kind: 'string', repeat: true, meta: 'KEY=VALUE', section: 'Configuration',
    help: 'set an option or placeholder as if KEY = VALUE were written in a config file' }),
  declare({ name: 'set-placeholder', aliases: ['set-ph'], kind: 'string', repeat: true, meta: 'KEY=VALUE', section: 'Configuration',
    help: 'define a %(KEY) placeholder without it being an option' }),
  declare({ name: 'get', kind: 'string', repeat: true, meta: 'KEY', section: 'Configuration',
    help: 'print the resolved first value of KEY from the configuration and exit' }),
  bool('show-config', 'Configuration', 'print the resolved configuration as ini before starting'),
  declare({ name: 'print', kind: 'string', repeat: true, meta: 'TEXT', section: 'Configuration',
    help: 'print TEXT while the configuration is read' }),
  bool('strict', 'Configuration', 'treat warnings as errors; a str in a WSGI response body becomes a 500'),
  declare({ name: 'help', short: 'h', aliases: ['usage'], kind: 'bool', implicit: 'true', section: 'Configuration',
    help: 'show this help and exit' }),
  declare({ name: 'version', kind: 'bool', implicit: 'true', section: 'Configuration', help: 'print the version and exit' }),

  // ---- Sockets ----
  declare({ name: 'socket', short: 's', kind: 'string', repeat: true, meta: 'ADDR', section: 'Sockets',
    help: 'bind ADDR (/path, host:port, :port, [::]:port) with the default protocol (uwsgi, or --protocol); may repeat' }),
  declare({ name: 'uwsgi-socket', kind: 'string', repeat: true, meta: 'ADDR', section: 'Sockets',
    help: 'bind ADDR speaking the uwsgi protocol, whatever --protocol says' }),
  declare({ name: 'http-socket', kind: 'string', repeat: true, meta: 'ADDR', section: 'Sockets',
    help: 'bind ADDR speaking HTTP/1.1 (Python apps: through the router, so slow clients never hold a worker; Node apps: the workers themselves)' }),
  declare({ name: 'http', kind: 'string', repeat: true, meta: 'ADDR', section: 'Sockets',
    help: "uWSGI's HTTP router on ADDR; in tsgi the same as --http-socket, with http-timeout" }),
  declare({ name: 'protocol', aliases: ['socket-protocol'], kind: 'string', meta: 'NAME', choices: ['uwsgi', 'http'], default: 'uwsgi', section: 'Sockets',
    help: 'protocol spoken on sockets bound with --socket (uwsgi or http)' }),
  declare({ name: 'http-timeout', kind: 'int', default: '60', min: 1, meta: 'SECONDS', section: 'Sockets',
    help: 'an HTTP client (--http) idle this long while sending its request or between keep-alive requests is disconnected' }),
  declare({ name: 'limit-post', kind: 'int', default: '0', min: 0, meta: 'BYTES', section: 'Sockets',
    help: 'largest request body accepted over HTTP; a larger one is answered 413 (0: no limit)' }),
  declare({ name: 'chmod-socket', short: 'C', aliases: ['chmod'], kind: 'mode', implicit: '666', meta: 'MODE', section: 'Sockets',
    help: 'chmod Unix sockets to MODE (octal; bare: 666)' }),
  declare({ name: 'chown-socket', kind: 'string', meta: 'USER[:GROUP]', section: 'Sockets',
    help: 'chown Unix sockets (names or numbers)' }),
  declare({ name: 'listen', short: 'l', kind: 'int', default: '100', min: 1, max: 65535, meta: 'N', section: 'Sockets',
    help: 'listen queue (backlog) of every socket' }),
  bool('so-keepalive', 'Sockets', 'enable TCP keepalive probes (SO_KEEPALIVE, with the system\'s timings) on the connections of every TCP socket'),
  declare({ name: 'http-keepalive', kind: 'string', implicit: '1', meta: 'N', section: 'Sockets', status: 'accepted',
    help: 'tsgi always keeps HTTP/1.1 connections (and HTTP/1.0 ones that ask) open between requests, on --http and --http-socket, for Python and Node apps; the value is ignored' }),
  bool('http-auto-chunked', 'Sockets', 'tsgi always sends an HTTP/1.1 response without a Content-Length chunked, so its connection stays open', { status: 'accepted' }),
  bool('vacuum', 'Sockets', 'remove Unix socket files and the pidfile when the server stops'),
  declare({ name: 'buffer-size', short: 'b', kind: 'int', default: '4096', min: 512, max: 65535, meta: 'BYTES', section: 'Sockets',
    help: 'largest uwsgi request header (vars) accepted; a larger packet is logged and its connection closed' }),
  declare({ name: 'socket-timeout', short: 'z', kind: 'int', default: '4', min: 1, meta: 'SECONDS', section: 'Sockets',
    help: 'a client that sends nothing for this long while its request is read is disconnected (uwsgi and --http-socket)' }),

  // HTTPS and the router in front of other instances (docs/https.md).
  declare({ name: 'https', kind: 'string', repeat: true, meta: 'ADDR,CERT,KEY[,CIPHERS[,CA]]', section: 'Sockets',
    help: "uWSGI's HTTPS router on ADDR: TLS with CERT and KEY (read by the master before dropping privileges), CIPHERS an OpenSSL list, CA a client-CA file (!CA: a client certificate is required); Python apps through the router, Node apps in their workers" }),
  declare({ name: 'https-socket', kind: 'string', repeat: true, meta: 'ADDR,CERT,KEY[,CIPHERS[,CA]]', section: 'Sockets',
    help: 'as https, with socket-timeout (in tsgi both are served the same way: the router, or a Node app\'s workers)' }),
  declare({ name: 'http-to-https', kind: 'string', repeat: true, meta: 'ADDR', section: 'Sockets',
    help: 'an HTTP listener on ADDR that answers every request with a 301 to the same URI over https' }),
  declare({ name: 'http-to', kind: 'string', repeat: true, meta: 'ADDR', section: 'Sockets',
    help: "the HTTP router forwards requests to these uwsgi servers (other tsgi or uWSGI instances), round robin, instead of this instance's workers (Python apps' router)" }),
  bool('https-export-cert', 'Sockets', "the client's certificate (PEM) reaches the app as HTTPS_CC"),
  declare({ name: 'https-session-context', kind: 'string', meta: 'NAME', section: 'Sockets', status: 'accepted',
    help: "uWSGI names the TLS sessions its router processes share through its cache with it; tsgi sets it as the session id context, but each https listener keeps its own sessions (nothing is shared), so it changes nothing" }),
  declare({ name: 'ssl-sessions-timeout', kind: 'int', default: '300', min: 1, meta: 'SECONDS', section: 'Sockets',
    help: 'how long a TLS session of the https listeners can be resumed' }),
  declare({ name: 'ssl-verify-depth', kind: 'int', default: '1', min: 0, max: 100, meta: 'N', section: 'Sockets',
    help: "most CA certificates between a client certificate and the trusted CA (https with a client CA); a longer chain is refused" }),
  declare({ name: 'ssl-sessions-use-cache', kind: 'string', implicit: 'true', meta: 'CACHE', section: 'Sockets', status: 'accepted',
    help: "uWSGI shares TLS sessions among its HTTP router processes through its cache; tsgi's one router keeps them itself (Node's session cache and tickets), so sessions resume without it; the value is ignored" }),
  declare({ name: 'http-processes', aliases: ['http-workers'], kind: 'int', default: '1', min: 1, meta: 'N', section: 'Sockets',
    help: 'HTTP router processes: tsgi runs one (1 is accepted, another number refused)' }),

  // ---- Processes ----
  bool('master', 'Processes', 'run the master process (tsgi always has one; accepted for uWSGI configs)', { short: 'M' }),
  declare({ name: 'processes', short: 'p', aliases: ['workers'], kind: 'int', default: '1', min: 1, max: 1024, meta: 'N', section: 'Processes',
    help: 'number of worker processes' }),
  declare({ name: 'cheaper', kind: 'int', default: '0', min: 0, meta: 'N', section: 'Processes',
    help: 'adaptive process spawning: keep at least N workers running (N < processes) and start more, up to processes, under load (0: off)' }),
  declare({ name: 'cheaper-initial', kind: 'int', min: 0, meta: 'N', section: 'Processes',
    help: 'with cheaper: workers started at boot and on a graceful reload (default: cheaper; kept between cheaper and processes)' }),
  declare({ name: 'cheaper-step', kind: 'int', default: '1', min: 1, meta: 'N', section: 'Processes',
    help: 'with cheaper: how many workers to start at once when all running workers are busy' }),
  declare({ name: 'cheaper-overload', kind: 'int', default: '3', min: 1, meta: 'SECONDS', section: 'Processes',
    help: 'with cheaper (spare): start workers once every running worker has been busy for more than SECONDS; stop one every SECONDS while two or more are idle' }),
  declare({ name: 'cheaper-algo', kind: 'string', default: 'spare', meta: 'NAME', section: 'Processes',
    help: "with cheaper: spare (busy/idle workers, uWSGI's default) or manual (only the master FIFO's + and - change the count)" }),
  bool('die-on-term', 'Processes', 'SIGTERM stops the server gracefully (always the case in tsgi: accepted for uWSGI configs)', { default: 'true' }),
  declare({ name: 'reload-mercy', kind: 'int', default: '60', min: 0, meta: 'SECONDS', section: 'Processes',
    help: 'how long a graceful stop or reload waits for busy workers before killing them' }),
  declare({ name: 'worker-reload-mercy', kind: 'int', default: '60', min: 0, meta: 'SECONDS', section: 'Processes',
    help: 'how long one worker may take to finish its requests when it is asked to stop' }),
  declare({ name: 'pidfile', kind: 'string', meta: 'PATH', section: 'Processes', help: 'write the master pid to PATH (before dropping privileges)' }),
  declare({ name: 'pidfile2', kind: 'string', meta: 'PATH', section: 'Processes', help: 'write the master pid to PATH after dropping privileges' }),
  declare({ name: 'uid', kind: 'string', meta: 'USER', section: 'Processes', help: 'run as USER (name or number) once sockets are bound' }),
  declare({ name: 'gid', kind: 'string', meta: 'GROUP', section: 'Processes', help: 'run as GROUP (name or number) once sockets are bound' }),
  declare({ name: 'chdir', kind: 'string', meta: 'DIR', section: 'Processes', help: 'change to DIR before loading the app' }),
  declare({ name: 'env', kind: 'string', repeat: true, meta: 'KEY=VALUE', section: 'Processes', help: 'set an environment variable for the app' }),
  bool('need-app', 'Processes', 'exit at startup when the app cannot be loaded (the default in tsgi)', { default: 'true' }),
  bool('lazy-apps', 'Processes', 'load the app in each worker instead of once in an app loader that forks them (copy-on-write)', { aliases: ['lazy'] }),
  declare({ name: 'threads', kind: 'int', default: '1', min: 1, max: 256, meta: 'N', section: 'Processes',
    help: 'threads per worker: N requests at once in each worker' }),
  declare({ name: 'umask', kind: 'string', meta: 'MASK', section: 'Processes',
    help: "the master's umask (octal, e.g. 027), set before sockets are bound and files created; workers inherit it" }),
  declare({ name: 'procname', kind: 'string', meta: 'NAME', section: 'Processes',
    help: 'process title of every tsgi process (master, workers, router) instead of tsgi master, tsgi worker N, tsgi router' }),
  declare({ name: 'procname-master', kind: 'string', meta: 'NAME', section: 'Processes',
    help: "the master's process title (instead of procname or tsgi master)" }),
  declare({ name: 'procname-prefix', kind: 'string', meta: 'TEXT', section: 'Processes',
    help: 'put TEXT before every process title' }),
  declare({ name: 'procname-prefix-spaced', kind: 'string', meta: 'TEXT', section: 'Processes',
    help: 'put TEXT and a space before every process title (wins over procname-prefix)' }),
  declare({ name: 'procname-append', kind: 'string', meta: 'TEXT', section: 'Processes',
    help: 'put TEXT after every process title' }),
  bool('auto-procname', 'Processes', 'give processes meaningful titles (always done in tsgi: tsgi master, tsgi worker N, tsgi router)',
    { status: 'accepted' }),
  bool('thunder-lock', 'Processes', 'serialize accept(): tsgi workers never thunder (the kernel wakes one accept), so this is already the case',
    { status: 'accepted' }),

  // ---- Reloading and limits ----
  declare({ name: 'harakiri', short: 't', kind: 'int', default: '0', min: 0, meta: 'SECONDS', section: 'Reloading and limits',
    help: 'kill and replace a worker whose request runs longer than this; the client gets a 502 (0: off)' }),
  bool('harakiri-verbose', 'Reloading and limits', 'log the stack of every thread of a worker before harakiri kills it'),
  declare({ name: 'max-requests', short: 'R', kind: 'int', default: '0', min: 0, meta: 'N', section: 'Reloading and limits',
    help: 'recycle a worker after N requests (it finishes, a fresh one takes over; 0: never)' }),
  declare({ name: 'max-requests-delta', kind: 'int', default: '0', min: 0, meta: 'N', section: 'Reloading and limits',
    help: 'add worker id × N to max-requests, so workers do not all recycle at once' }),
  declare({ name: 'max-worker-lifetime', kind: 'int', default: '0', min: 0, meta: 'SECONDS', section: 'Reloading and limits',
    help: 'recycle a worker after it has lived this long (a replacement starts first; 0: never)' }),
  declare({ name: 'max-worker-lifetime-delta', kind: 'int', default: '0', min: 0, meta: 'SECONDS', section: 'Reloading and limits',
    help: 'add worker id × N seconds to max-worker-lifetime' }),
  declare({ name: 'reload-on-rss', kind: 'int', default: '0', min: 0, meta: 'MB', section: 'Reloading and limits',
    help: 'recycle a worker gracefully once its resident memory passes MB (0: off)' }),
  declare({ name: 'evil-reload-on-rss', kind: 'int', default: '0', min: 0, meta: 'MB', section: 'Reloading and limits',
    help: 'kill a worker at once when its resident memory passes MB, even mid-request (0: off)' }),
  declare({ name: 'touch-reload', kind: 'string', repeat: true, meta: 'FILE', section: 'Reloading and limits',
    help: 'reload gracefully when FILE is touched or changed' }),
  declare({ name: 'touch-chain-reload', kind: 'string', repeat: true, meta: 'FILE', section: 'Reloading and limits',
    help: 'chain-reload (one worker at a time, each new one serving before the next old one stops) when FILE is touched' }),
  declare({ name: 'master-fifo', kind: 'string', repeat: true, meta: 'PATH', section: 'Reloading and limits',
    help: "a FIFO the master reads one-letter commands from: r reload, c chain reload, q graceful stop, Q stop now, s stats to the log, l reopen the log" }),

  // ---- Applications (Python or TypeScript/JavaScript) ----
  declare({ name: 'module', short: 'w', aliases: ['wsgi'], kind: 'string', meta: 'MODULE[:CALLABLE]', section: 'Applications',
    help: 'load the app from MODULE (dotted path; `mod:callable` names the callable): MODULE.py, or MODULE.ts/.mts/.js/.mjs for a Node app' }),
  declare({ name: 'wsgi-file', aliases: ['file'], kind: 'string', meta: 'PATH', section: 'Applications',
    help: 'load the app from a file: .py runs in Python workers, .ts/.mts/.cts/.js/.mjs/.cjs in Node workers' }),
  declare({ name: 'callable', kind: 'string', default: 'application', meta: 'NAME', section: 'Applications',
    help: 'name of the app in the module or file (a Node app may also be its default export)' }),
  declare({ name: 'mount', kind: 'string', repeat: true, meta: 'MOUNTPOINT=APP', section: 'Applications',
    help: 'load one more Python app under MOUNTPOINT (/blog=blog.py, /api=api.wsgi:app, /shop=shop:application); ' +
      "a request goes to the app whose mountpoint is its SCRIPT_NAME (else the first app), see manage-script-name; may repeat (docs/mount.md)" }),
  bool('manage-script-name', 'Applications',
    'pick the app by the longest mountpoint that starts PATH_INFO (at a / boundary), move that prefix from PATH_INFO to SCRIPT_NAME'),
  bool('no-default-app', 'Applications', 'a request whose SCRIPT_NAME names no mountpoint gets a 500 instead of going to the first app'),
  // ---- Dynamic apps and virtual hosting (docs/vhost.md) ----
  bool('vhost', 'Applications', "virtual hosting: a request's app is keyed by HOST|SCRIPT_NAME (Host header, else SERVER_NAME); " +
    'apps are loaded as the web server names them (UWSGI_SCRIPT, UWSGI_MODULE, UWSGI_FILE) and no app is the default'),
  bool('vhost-host', 'Applications', 'the same as vhost (uWSGI 2.0 keys both by the Host header, else SERVER_NAME)'),
  declare({ name: 'max-apps', kind: 'int', default: '64', min: 1, meta: 'N', section: 'Applications',
    help: 'most apps a worker holds, configured and loaded per request together (UWSGI_SCRIPT, ...)' }),
  declare({ name: 'plugins', aliases: ['plugin'], kind: 'string', repeat: true, meta: 'LIST', section: 'Applications',
    help: 'worker kind, as uWSGI plugins: python/python3/pythonXY (Python workers) or node (Node workers); built in, others are reported' }),

  // ---- Python applications ----
  declare({ name: 'home', short: 'H', aliases: ['virtualenv', 'venv', 'pyhome'], kind: 'string', meta: 'DIR', section: 'Python applications',
    help: 'virtualenv (or Python prefix) to run the app with; default: $VIRTUAL_ENV, else python3 on PATH' }),
  declare({ name: 'pythonpath', aliases: ['python-path', 'pp'], kind: 'string', repeat: true, meta: 'DIR', section: 'Python applications',
    help: 'add DIR to sys.path; may repeat' }),
  declare({ name: 'import', aliases: ['pyimport', 'py-import', 'python-import'], kind: 'string', repeat: true, meta: 'MODULE', section: 'Python applications',
    help: 'import MODULE before the app, where the app is loaded (the app loader, or each worker with lazy-apps); may repeat. One that fails stops the start, as an app that fails (need-app)' }),
  bool('enable-threads', 'Python applications', 'allow app threads (always the case in tsgi workers)', { short: 'T', status: 'accepted' }),
  bool('single-interpreter', 'Python applications', 'one interpreter per worker (always the case in tsgi)', { short: 'i', status: 'accepted' }),
  declare({ name: 'py-autoreload', aliases: ['python-autoreload', 'python-auto-reload'], kind: 'int', default: '0', min: 0, meta: 'SECONDS', section: 'Python applications',
    help: 'every SECONDS, reload the workers gracefully if the source file of a module the app loaded has changed (development; 0: off)' }),
  bool('py-call-uwsgi-fork-hooks', 'Python applications',
    "run the app's os.register_at_fork hooks around each fork of a worker: always done in tsgi, whose app loader forks with os.fork()",
    { status: 'accepted' }),
  bool('py-call-osafterfork', 'Python applications',
    "let CPython reinitialize itself (signals, threads, at-fork hooks) in each forked worker: always done in tsgi (os.fork())",
    { status: 'accepted' }),
  bool('wsgi-disable-file-wrapper', 'Python applications', 'do not offer wsgi.file_wrapper to apps'),
  bool('catch-exceptions', 'Python applications', 'send the traceback of an app error to the client (development only)'),

  // ---- Node applications ----
  declare({ name: 'app-contract', aliases: ['contract'], kind: 'string', meta: 'NAME', choices: ['wsgi', 'fetch', 'listener'], section: 'Node applications',
    help: "how a Node app is called: wsgi (application(environ, start_response)), fetch (fetch(Request) => Response, e.g. Hono) " +
      "or listener (node's (req, res), e.g. Express); default: told by what the module exports" }),

  // ---- Internal routing (src/config/routing.ts, python/tsgi_worker/routing.py, docs/routing.md) ----
  declare({ name: 'route', kind: 'string', repeat: true, meta: 'REGEXP ACTION:ARG', section: 'Routing',
    help: 'Python apps: run ACTION when PATH_INFO matches REGEXP, before static files and the app ($1..$9: its groups); rules run in the order given' }),
  declare({ name: 'route-host', kind: 'string', repeat: true, meta: 'REGEXP ACTION:ARG', section: 'Routing', help: 'as route, matching HTTP_HOST' }),
  declare({ name: 'route-uri', kind: 'string', repeat: true, meta: 'REGEXP ACTION:ARG', section: 'Routing', help: 'as route, matching REQUEST_URI' }),
  declare({ name: 'route-qs', kind: 'string', repeat: true, meta: 'REGEXP ACTION:ARG', section: 'Routing', help: 'as route, matching QUERY_STRING' }),
  declare({ name: 'route-remote-addr', kind: 'string', repeat: true, meta: 'REGEXP ACTION:ARG', section: 'Routing', help: 'as route, matching REMOTE_ADDR' }),
  declare({ name: 'route-user-agent', kind: 'string', repeat: true, meta: 'REGEXP ACTION:ARG', section: 'Routing', help: 'as route, matching HTTP_USER_AGENT' }),
  declare({ name: 'route-referer', kind: 'string', repeat: true, meta: 'REGEXP ACTION:ARG', section: 'Routing', help: 'as route, matching HTTP_REFERER' }),
  declare({ name: 'route-remote-user', kind: 'string', repeat: true, meta: 'REGEXP ACTION:ARG', section: 'Routing', help: 'as route, matching REMOTE_USER' }),
  declare({ name: 'route-run', kind: 'string', repeat: true, meta: 'ACTION:ARG', section: 'Routing', help: 'run ACTION for every request' }),
  declare({ name: 'route-if', kind: 'string', repeat: true, meta: 'COND:ARGS ACTION:ARG', section: 'Routing',
    help: 'run ACTION when the condition holds (equal:${HTTP_HOST};example.com, startswith, endswith, contains, regexp, empty, isfile, isdir, ishigher, ...)' }),
  declare({ name: 'route-if-not', kind: 'string', repeat: true, meta: 'COND:ARGS ACTION:ARG', section: 'Routing', help: 'run ACTION when the condition does not hold' }),
  declare({ name: 'route-label', kind: 'string', repeat: true, meta: 'NAME', section: 'Routing', help: 'a place in the rules that goto:NAME jumps to (forward only)' }),

  // final-route* (docs/routing.md): the same rules, run after the response and before its log line.
  ...['', '-host', '-uri', '-qs', '-remote-addr', '-user-agent', '-referer', '-remote-user'].map((suffix) =>
    declare({ name: `final-route${suffix}`, kind: 'string', repeat: true, meta: 'REGEXP ACTION:ARG', section: 'Routing',
      help: `as route${suffix}, run after the response is sent and before its log line (log, logvar, donotlog, goto, continue, break)` })),
  declare({ name: 'final-route-run', kind: 'string', repeat: true, meta: 'ACTION:ARG', section: 'Routing', help: 'as route-run, after the response (final routes)' }),
  declare({ name: 'final-route-if', kind: 'string', repeat: true, meta: 'COND:ARGS ACTION:ARG', section: 'Routing', help: 'as route-if, after the response (final routes)' }),
  declare({ name: 'final-route-if-not', kind: 'string', repeat: true, meta: 'COND:ARGS ACTION:ARG', section: 'Routing', help: 'as route-if-not, after the response (final routes)' }),
  declare({ name: 'final-route-label', kind: 'string', repeat: true, meta: 'NAME', section: 'Routing', help: 'a label of the final routes for goto' }),

  // error-route*, response-route*, collect-header, pull-header (docs/routing.md): run when the status is set and
  // when the headers are written.
  ...(['error', 'response'] as const).flatMap((table) => [
    ...['', '-host', '-uri', '-qs', '-remote-addr', '-user-agent', '-referer', '-remote-user'].map((suffix) =>
      declare({ name: `${table}-route${suffix}`, kind: 'string', repeat: true, meta: 'REGEXP ACTION:ARG', section: 'Routing',
        help: `as route${suffix}, run ${table === 'error' ? 'when the response status is set' : 'when the response headers are written'}` })),
    declare({ name: `${table}-route-status`, kind: 'string', repeat: true, meta: 'CODE ACTION:ARG', section: 'Routing', help: `run ACTION in the ${table} routes when the status is CODE (a number, read as atoi)` }),
    declare({ name: `${table}-route-run`, kind: 'string', repeat: true, meta: 'ACTION:ARG', section: 'Routing', help: `as route-run, in the ${table} routes` }),
    declare({ name: `${table}-route-if`, kind: 'string', repeat: true, meta: 'COND:ARGS ACTION:ARG', section: 'Routing', help: `as route-if, in the ${table} routes` }),
    declare({ name: `${table}-route-if-not`, kind: 'string', repeat: true, meta: 'COND:ARGS ACTION:ARG', section: 'Routing', help: `as route-if-not, in the ${table} routes` }),
    declare({ name: `${table}-route-label`, kind: 'string', repeat: true, meta: 'NAME', section: 'Routing', help: `a label of the ${table} routes for goto` }),
  ]),
  declare({ name: 'collect-header', kind: 'string', repeat: true, meta: 'HEADER VAR', section: 'Routing', help: 'copy a response header into the request variable VAR (for ${VAR} in response routes)' }),
  declare({ name: 'pull-header', kind: 'string', repeat: true, meta: 'HEADER VAR', section: 'Routing', help: 'as collect-header, and keep the header out of the response' }),

  // ---- Caching (src/cache, python/tsgi_worker/cache.py, docs/cache.md) ----
  declare({ name: 'cache2', kind: 'string', repeat: true, meta: 'name=NAME,items=N[,...]', section: 'Caching',
    help: 'Python apps: a cache shared by every worker (blocksize=, blocks=, keysize=, bitmap=1, purge_lru=1, store=FILE, ...); may repeat' }),
  declare({ name: 'cache', kind: 'int', min: 1, meta: 'ITEMS', section: 'Caching', help: 'the old-style cache "default" with ITEMS items (cache-blocksize bytes each)' }),
  declare({ name: 'cache-blocksize', kind: 'int', min: 1, meta: 'BYTES', section: 'Caching', help: "the largest value of the 'cache' cache (default 65536)" }),
  declare({ name: 'cache-store', kind: 'string', meta: 'FILE', section: 'Caching', help: "keep the 'cache' cache in FILE, so it survives a restart" }),
  declare({ name: 'cache-store-sync', kind: 'int', min: 1, meta: 'SECONDS', section: 'Caching', help: 'flush the store files to disk every SECONDS' }),
  bool('cache-no-expire', 'Caching', 'items of every cache never expire (their expires argument is ignored)'),
  declare({ name: 'cache-expire-freq', kind: 'int', min: 1, meta: 'SECONDS', section: 'Caching', status: 'accepted',
    help: "uWSGI's sweeper period; tsgi never returns an expired item and frees expired items when it needs room, so there is no sweeper to tune" }),
  declare({ name: 'load-file-in-cache', kind: 'string', repeat: true, meta: '[CACHE ]FILE', section: 'Caching', help: 'store the content of FILE in the cache at start, under the key FILE' }),
  declare({ name: 'load-file-in-cache-gzip', kind: 'string', repeat: true, meta: '[CACHE ]FILE', section: 'Caching', help: 'as load-file-in-cache, the content gzip-compressed' }),
  declare({ name: 'add-cache-item', kind: 'string', repeat: true, meta: '[CACHE ]KEY=VALUE', section: 'Caching', help: 'store VALUE under KEY at start' }),

  // ---- Static files (src/static, docs/static-files.md) ----
  declare({ name: 'static-map', kind: 'string', repeat: true, meta: 'MOUNT=PATH', section: 'Static files',
    help: 'serve GET/HEAD requests under MOUNT from PATH (a directory, or one file); a file not found goes to the app; may repeat' }),
  declare({ name: 'static-map2', kind: 'string', repeat: true, meta: 'MOUNT=PATH', section: 'Static files',
    help: 'like static-map, but the whole request path is appended to PATH (/img/a.png from PATH/img/a.png)' }),
  declare({ name: 'check-static', kind: 'string', repeat: true, meta: 'DIR', section: 'Static files',
    help: 'serve any GET/HEAD request whose path names a file under DIR; may repeat' }),
  declare({ name: 'static-index', kind: 'string', repeat: true, meta: 'NAME', section: 'Static files',
    help: 'file to serve when a static request names a directory (e.g. index.html); may repeat, tried in order' }),
  declare({ name: 'static-skip-ext', kind: 'string', repeat: true, meta: 'EXT', section: 'Static files',
    help: 'never serve paths ending in EXT statically (they go to the app); may repeat' }),
  declare({ name: 'static-safe', kind: 'string', repeat: true, meta: 'DIR', section: 'Static files',
    help: 'allow static files whose real path (symlinks resolved) is under DIR although outside their mount; may repeat' }),
  declare({ name: 'static-expires', kind: 'string', repeat: true, meta: 'REGEX SECONDS', section: 'Static files',
    help: 'Expires: now + SECONDS for static files whose file name matches REGEX; may repeat, the first match wins' }),
  declare({ name: 'static-expires-mtime', kind: 'string', repeat: true, meta: 'REGEX SECONDS', section: 'Static files',
    help: "as static-expires, from the file's modification time" }),
  declare({ name: 'static-expires-uri', kind: 'string', repeat: true, meta: 'REGEX SECONDS', section: 'Static files',
    help: 'as static-expires, matching the request URI' }),
  declare({ name: 'static-expires-uri-mtime', kind: 'string', repeat: true, meta: 'REGEX SECONDS', section: 'Static files',
    help: "as static-expires-uri, from the file's modification time" }),
  declare({ name: 'static-expires-path-info', kind: 'string', repeat: true, meta: 'REGEX SECONDS', section: 'Static files',
    help: 'as static-expires, matching PATH_INFO' }),
  declare({ name: 'static-expires-path-info-mtime', kind: 'string', repeat: true, meta: 'REGEX SECONDS', section: 'Static files',
    help: "as static-expires-path-info, from the file's modification time" }),
  declare({ name: 'static-expires-type', kind: 'string', repeat: true, meta: 'TYPE=SECONDS', section: 'Static files',
    help: 'as static-expires, for static files of content type TYPE (text/css=86400)' }),
  declare({ name: 'static-expires-type-mtime', kind: 'string', repeat: true, meta: 'TYPE=SECONDS', section: 'Static files',
    help: "as static-expires-type, from the file's modification time" }),
  bool('static-gzip-all', 'Static files', 'serve FILE.gz (Content-Encoding: gzip) instead of FILE when it exists and the client accepts gzip'),
  declare({ name: 'static-gzip', kind: 'string', repeat: true, meta: 'REGEX', section: 'Static files',
    help: 'as static-gzip-all, for files whose name matches REGEX; may repeat' }),
  declare({ name: 'static-gzip-ext', kind: 'string', repeat: true, meta: 'EXT', section: 'Static files',
    help: 'as static-gzip-all, for files ending in EXT; may repeat' }),
  declare({ name: 'static-gzip-dir', aliases: ['static-gzip-prefix'], kind: 'string', repeat: true, meta: 'DIR', section: 'Static files',
    help: 'as static-gzip-all, for files under DIR; may repeat' }),
  declare({ name: 'mime-file', kind: 'string', repeat: true, meta: 'FILE', section: 'Static files',
    help: 'read content types from FILE (mime.types format); default /etc/mime.types, else a built-in table' }),
  declare({ name: 'offload-threads', kind: 'int', default: '0', min: 0, meta: 'N', section: 'Static files', status: 'accepted',
    help: 'threads that send static files (accepted: tsgi sends them without holding a worker already)' }),

  // ---- Monitoring ----
  declare({ name: 'stats', aliases: ['stats-server'], kind: 'string', meta: 'ADDR', section: 'Monitoring',
    help: "serve uWSGI 2.0's stats JSON on ADDR (host:port or a Unix path), read by tsgi top, uwsgitop and friends" }),
  bool('stats-http', 'Monitoring', 'speak HTTP on the stats address: / is the JSON, /metrics the Prometheus text'),
  bool('stats-minified', 'Monitoring', 'minify the stats JSON', { aliases: ['stats-min'] }),
  // metrics (src/master/metrics.ts, docs/metrics.md)
  bool('enable-metrics', 'Monitoring', "uWSGI's metrics: per worker, core and socket values in the stats JSON (and metrics-dir), user metrics for uwsgi.metric_*()"),
  declare({ name: 'metric', kind: 'string', repeat: true, meta: 'name=NAME[,type=counter|gauge|absolute|alias][,initial_value=N][,oid=OID][,alias=METRIC]', section: 'Monitoring',
    help: 'a user metric shared by every worker (implies enable-metrics); may repeat' }),
  declare({ name: 'metrics-dir', aliases: ['metric-dir'], kind: 'string', meta: 'DIR', section: 'Monitoring', help: 'one file per metric in DIR, holding its value, as uWSGI writes them' }),
  bool('metrics-dir-restore', 'Monitoring', 'start the collected metrics from the values in metrics-dir', { aliases: ['metric-dir-restore'] }),
  bool('memory-report', 'Monitoring', "include workers' memory (rss, vsz) in the stats (always done in tsgi)", { short: 'm', status: 'accepted' }),

  // ---- Logging ----
  declare({ name: 'logto', kind: 'string', meta: 'PATH', section: 'Logging', help: 'append the log to PATH instead of stderr' }),
  bool('log-reopen', 'Logging', 'reopen the log file on every reload (after an external rotation)'),
  declare({ name: 'touch-logreopen', kind: 'string', repeat: true, meta: 'FILE', section: 'Logging',
    help: 'reopen the log file when FILE is touched (e.g. from logrotate)' }),
  declare({ name: 'log-maxsize', kind: 'int', default: '0', min: 0, meta: 'BYTES', section: 'Logging',
    help: 'rotate the logto file when it grows past BYTES: renamed to FILE.TIMESTAMP, a new one opened (0: never)' }),
  declare({ name: 'log-format', aliases: ['logformat'], kind: 'string', meta: 'TEMPLATE', section: 'Logging',
    help: "request log line with uWSGI's variables, %(addr) %(method) %(uri) %(status) %(msecs) %(size) %(referer) %(uagent) %(ltime) ...; a template starting with { is a JSON log whose values are always escaped" }),
  bool('log-x-forwarded-for', 'Logging', 'log the first X-Forwarded-For address as %(addr) instead of REMOTE_ADDR'),
  bool('disable-logging', 'Logging', 'do not log requests (errors are still logged)', { short: 'L' }),
  bool('log-4xx', 'Logging', 'log requests answered with a 4xx status even with disable-logging'),
  bool('log-5xx', 'Logging', 'log requests answered with a 5xx status even with disable-logging'),
  declare({ name: 'log-slow', kind: 'int', default: '0', min: 0, meta: 'MSECS', section: 'Logging',
    help: 'log requests that took more than MSECS milliseconds even with disable-logging (0: off)' }),
  declare({ name: 'log-big', kind: 'int', default: '0', min: 0, meta: 'BYTES', section: 'Logging',
    help: 'log requests whose response body is BYTES or larger even with disable-logging (0: off)' }),
  bool('log-zero', 'Logging', 'log requests whose response has no body even with disable-logging'),
  declare({ name: 'add-header', kind: 'string', repeat: true, meta: "'NAME: VALUE'", section: 'Applications',
    help: "add this header to every response: the app's (Python and Node) and static files'" }),
  declare({ name: 'del-header', aliases: ['rem-header'], kind: 'string', repeat: true, meta: 'NAME', section: 'Applications',
    help: "remove the header NAME (any case) from every response, the app's and static files'" }),
  declare({ name: 'log-date', aliases: ['logdate'], kind: 'string', implicit: 'true', meta: 'FORMAT', section: 'Logging',
    help: "prefix every log line but request lines with the date and ' - ': C's ctime() for a bare --log-date (or true, 1), else the strftime FORMAT" }),
  bool('logformat-strftime', 'Logging', '%(ftime) in log-format is the request time in the log-date strftime FORMAT (else it is %(ltime))'),
  bool('log-micros', 'Logging', 'the default request line reports the response time in micros instead of msecs'),

  // ---- Loggers, encoders, routes and log alarms (src/config/logging.ts, src/master/logmaster.ts, docs/logging.md) ----
  declare({ name: 'logger', kind: 'string', repeat: true, meta: '[NAME ]PLUGIN[:ARGS]', section: 'Logging',
    help: 'send the log to a logger (file:PATH, stdio, syslog[:IDENT[,FACILITY]], socket:HOST:PORT); may repeat: every line goes to every unnamed logger, named ones get what log-route sends them' }),
  declare({ name: 'req-logger', aliases: ['logger-req'], kind: 'string', repeat: true, meta: '[NAME ]PLUGIN[:ARGS]', section: 'Logging',
    help: 'send request lines to this logger (and only there); may repeat' }),
  declare({ name: 'log-encoder', kind: 'string', repeat: true, meta: 'ENCODER[:LOGGER] [ARGS]', section: 'Logging',
    help: 'transform each log line before its logger writes it: format TEMPLATE, json TEMPLATE (${msg} ${msgnl} ${unix} ${micros} ${millis} ${strftime:FMT}), prefix TEXT, suffix TEXT, nl, gzip, compress; chained in order' }),
  declare({ name: 'log-req-encoder', kind: 'string', repeat: true, meta: 'ENCODER[:LOGGER] [ARGS]', section: 'Logging',
    help: 'as log-encoder, for the request lines sent to req-logger' }),
  declare({ name: 'log-route', kind: 'string', repeat: true, meta: 'LOGGER REGEXP', section: 'Logging',
    help: 'lines matching REGEXP go to the named logger LOGGER (and then not to the unnamed ones)' }),
  declare({ name: 'log-req-route', kind: 'string', repeat: true, meta: 'LOGGER REGEXP', section: 'Logging',
    help: 'as log-route, for request lines and named req-loggers' }),
  bool('log-master', 'Logging', "the master reads the workers' output through a pipe and writes the log (implied by logger, req-logger, log-encoder and alarm-log)"),
  declare({ name: 'alarm', kind: 'string', repeat: true, meta: 'NAME PLUGIN:ARGS', section: 'Logging',
    help: 'define an alarm: cmd:COMMAND (run through /bin/sh with the log line on its stdin) or log:MESSAGE' }),
  declare({ name: 'alarm-log', aliases: ['log-alarm'], kind: 'string', repeat: true, meta: 'ALARM[,ALARM...] REGEXP', section: 'Logging',
    help: 'raise the alarms when a log line matches REGEXP' }),
  declare({ name: 'not-alarm-log', aliases: ['not-log-alarm'], kind: 'string', repeat: true, meta: 'ALARM[,ALARM...] REGEXP', section: 'Logging',
    help: 'a log line matching REGEXP raises no alarm from the alarm-log lines written after this one' }),
  declare({ name: 'alarm-segfault', aliases: ['segfault-alarm'], kind: 'string', repeat: true, meta: 'ALARM[,ALARM...]', section: 'Logging',
    help: "raise the alarms when a worker dies of a segmentation fault (SIGSEGV), with the master's line about it" }),
  declare({ name: 'alarm-backlog', aliases: ['backlog-alarm', 'alarm-lq', 'lq-alarm', 'alarm-listen-queue', 'listen-queue-alarm'], kind: 'string',
    repeat: true, meta: 'ALARM[,ALARM...]', section: 'Logging',
    help: "check the TCP sockets' listen queue every second: when it is full, log it (uWSGI's line) and raise the alarms" }),
  declare({ name: 'alarm-freq', kind: 'int', default: '3', min: 0, meta: 'SECS', section: 'Logging',
    help: 'an alarm raised again by the same line within SECS seconds is skipped' }),

  // ---- Daemons and cron (src/master/daemons.ts, src/master/cron.ts, docs/daemons.md) ----
  declare({ name: 'attach-daemon', kind: 'string', repeat: true, meta: 'CMD', section: 'Daemons and cron',
    help: 'run CMD (through /bin/sh) beside the workers: respawned when it dies, restarted on reload, stopped with tsgi; its output goes to the log' }),
  declare({ name: 'smart-attach-daemon', kind: 'string', repeat: true, meta: 'PIDFILE CMD', section: 'Daemons and cron',
    help: 'run CMD, which daemonizes itself and writes PIDFILE; the master watches that pid, starts CMD again when it is gone, keeps it across reloads, stops it with tsgi' }),
  declare({ name: 'smart-attach-daemon2', kind: 'string', repeat: true, meta: 'PIDFILE CMD', section: 'Daemons and cron',
    help: 'as smart-attach-daemon for a CMD that stays in the foreground: the master writes its pid to PIDFILE' }),
  declare({ name: 'cron', kind: 'string', repeat: true, meta: 'MIN HOUR MDAY MON WDAY CMD', section: 'Daemons and cron',
    help: 'run CMD (through /bin/sh) in every minute that matches: each field a number, -1 for any, -N for every N (months 1-12, weekdays 0-6 from Sunday)' }),
  declare({ name: 'unique-cron', kind: 'string', repeat: true, meta: 'MIN HOUR MDAY MON WDAY CMD', section: 'Daemons and cron',
    help: 'as cron, but a run is skipped while the previous run of the job is still going' }),
  declare({ name: 'cron2', kind: 'string', repeat: true, meta: '[KEY=VAL,...] CMD', section: 'Daemons and cron',
    help: 'as cron with named fields: minute, hour, day, month, week (missing ones are -1), unique=1, harakiri=SECS (0: never); a bare CMD runs every minute' }),
  declare({ name: 'cron-harakiri', kind: 'int', default: '0', min: 0, meta: 'SECONDS', section: 'Daemons and cron',
    help: 'kill a cron run (and what it started) still going after this long; 0: never' }),
  declare({ name: 'attach-daemon2', kind: 'string', repeat: true, meta: 'KEY=VAL,...', section: 'Daemons and cron',
    help: 'attach a daemon described by keys: cmd (command, exec), pidfile, daemonize, control, stopsignal, reloadsignal, touch (FILE;FILE), stdin, uid, gid, chdir, max_throttle, freq, notifypid' }),
  declare({ name: 'attach-control-daemon', kind: 'string', repeat: true, meta: 'CMD', section: 'Daemons and cron',
    help: 'as attach-daemon, but when CMD ends the whole instance stops gracefully' }),

  // ---- Mules (src/master/mules.ts, python/tsgi_worker/mules.py, docs/mules.md) ----
  declare({ name: 'mule', kind: 'string', repeat: true, implicit: '', meta: 'FILE.py|MODULE:FUNC', section: 'Python applications',
    help: 'add a mule: a process that loads the app and runs FILE.py or MODULE:FUNC, or (no value) waits for uwsgi.mule_msg() messages; may repeat' }),
  declare({ name: 'mules', kind: 'string', meta: 'N', section: 'Python applications', help: 'add N generic mules (they wait for uwsgi.mule_msg() messages)' }),
  declare({ name: 'mule-harakiri', kind: 'int', default: '0', min: 0, meta: 'SECONDS', section: 'Python applications',
    help: 'a generic mule still handling one message after this long is killed (and respawned); 0: never' }),
  declare({ name: 'farm', kind: 'string', repeat: true, meta: 'NAME:ID[,ID...]', section: 'Python applications',
    help: 'a named group of mules: uwsgi.mule_msg(msg, NAME) and uwsgi.farm_msg(NAME, msg) reach one of them' }),
  // ---- Spooler (src/master/spoolers.ts, python/tsgi_worker/spooler.py, docs/spooler.md) ----
  declare({ name: 'spooler', kind: 'string', repeat: true, meta: 'DIR', section: 'Python applications',
    help: "run a spooler on DIR (created if missing): a process that loads the app and runs the tasks uwsgi.spool() writes there; may repeat" }),
  declare({ name: 'spooler-external', kind: 'string', repeat: true, meta: 'DIR', section: 'Python applications',
    help: 'uwsgi.spool() may write tasks to DIR, which another instance\'s spooler runs (no spooler process here)' }),
  declare({ name: 'spooler-processes', kind: 'int', default: '1', min: 1, meta: 'N', section: 'Python applications',
    help: 'spooler processes per spooler directory' }),
  declare({ name: 'spooler-frequency', aliases: ['spooler-freq'], kind: 'int', default: '30', min: 1, meta: 'SECONDS', section: 'Python applications',
    help: 'how often an idle spooler scans its directory (a task spooled here wakes it at once); also the delay before a retried task runs again' }),
  declare({ name: 'spooler-import', aliases: ['spooler-python-import', 'spooler-py-import', 'spooler-pyimport'], kind: 'string', repeat: true,
    meta: 'MODULE', section: 'Python applications', help: 'import MODULE in the spooler processes only (after the app), for its task functions' }),
  declare({ name: 'spooler-chdir', kind: 'string', meta: 'DIR', section: 'Python applications',
    help: 'the spooler runs each task in DIR (else in the spooler directory, as uWSGI)' }),
  declare({ name: 'spooler-max-tasks', kind: 'int', default: '0', min: 0, meta: 'N', section: 'Python applications',
    help: 'a spooler process that ran N tasks is replaced by a fresh one; 0: never' }),
  declare({ name: 'spooler-harakiri', kind: 'int', default: '0', min: 0, meta: 'SECONDS', section: 'Python applications',
    help: 'a spooler task still running after this long kills its spooler process (the master starts another; the task stays spooled); 0: never' }),
  bool('spooler-ordered', 'Python applications', "scan the spooler directory in name order, and the numeric 'priority' subdirectories (only then are they scanned, as in uWSGI)"),
  bool('spooler-quiet', 'Python applications', "no log line per task ('managing request', 'done with task', 'written N bytes')"),

  // exec-* hooks (src/master/exec-hooks.ts)
  ...(['asap', 'pre-jail', 'in-jail', 'as-root', 'as-user', 'pre-app', 'as-user-atexit'] as const).map((phase) =>
    declare({ name: `exec-${phase}`, kind: 'string', repeat: true, meta: 'CMD', section: 'Daemons and cron',
      help: {
        asap: 'run CMD (through /bin/sh) first thing at start, and wait for it; a failure stops the start',
        'pre-jail': 'run CMD at start, after exec-asap (tsgi has no jail); a failure stops the start',
        'in-jail': 'run CMD at start, after exec-pre-jail (tsgi has no jail); a failure stops the start',
        'as-root': 'run CMD before the sockets are bound and privileges dropped (uid/gid); a failure stops the start',
        'as-user': 'run CMD after privileges are dropped, at start and on each reload; a failure stops the start (or the reload)',
        'pre-app': 'run CMD before the app is loaded and the workers start, at start and on each reload; a failure stops the start (or the reload)',
        'as-user-atexit': 'run CMD when tsgi stops, and before each reload',
      }[phase] })),

  // ---- Emperor (src/emperor, docs/emperor.md) ----
  declare({ name: 'emperor', kind: 'string', repeat: true, meta: 'DIR|GLOB', section: 'Emperor',
    help: "run as an emperor: one tsgi instance (vassal) per config file in DIR or matching GLOB ('/etc/tsgi/vassals/*.ini'); a new file starts one, a touched file reloads it, a removed file stops it; may repeat" }),
  bool('emperor-tyrant', 'Emperor', "run each vassal as the owner (uid and gid) of its config file; needs root; files owned by root are refused"),
  declare({ name: 'vassals-inherit', kind: 'string', repeat: true, meta: 'FILE', section: 'Emperor',
    help: "an ini file every vassal reads after its own file (%N, %D in it name the vassal's file); may repeat" }),
  declare({ name: 'vassal-set', kind: 'string', repeat: true, meta: 'KEY=VALUE', section: 'Emperor', perVassal: true,
    help: "set an option for every vassal (as --set before its file, which may override it); %n, %d... name the vassal's file" }),
  declare({ name: 'emperor-stats', aliases: ['emperor-stats-server'], kind: 'string', meta: 'ADDR', section: 'Emperor',
    help: 'serve the table of vassals as JSON on ADDR (host:port or a Unix socket path): one answer per connection, then close' }),
  declare({ name: 'emperor-freq', kind: 'int', default: '3', min: 1, max: 3600, meta: 'SECONDS', section: 'Emperor',
    help: 'rescan the vassal folders this often, besides watching them (a missed file event is caught within this time)' }),
];

const byName = new Map<string, OptionDef>();
const byShort = new Map<string, OptionDef>();
for (const o of OPTIONS) {
  for (const n of [o.name, ...o.aliases]) {
    if (byName.has(n)) throw new Error(`option table: ${n} declared twice`);
    byName.set(n, o);
  }
  if (o.short) byShort.set(o.short, o);
}

/** The implemented (or accepted) option a name or alias refers to. */
export function findOption(name: string): OptionDef | undefined {
  return byName.get(name);
}

export function findShort(letter: string): OptionDef | undefined {
  return byShort.get(letter);
}

const uwsgiNames = new Set(UWSGI_OPTION_NAMES);

/** True when `name` is a uWSGI option that tsgi does not implement yet. */
export function isKnownUnimplemented(name: string): boolean {
  return !byName.has(name) && uwsgiNames.has(name);
}

function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j]!;
      prev[j] = Math.min(prev[j]! + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = tmp;
    }
  }
  return prev[b.length]!;
}

/** The known option name nearest to a mistyped one (implemented names first). */
export function nearestOption(name: string): string | undefined {
  let best: string | undefined;
  let bestScore = Infinity;
  const consider = (cand: string, penalty: number): void => {
    const d = editDistance(name, cand) + penalty;
    if (d < bestScore) {
      bestScore = d;
      best = cand;
    }
  };
  for (const n of byName.keys()) consider(n, 0);
  for (const n of uwsgiNames) consider(n, 0.5);
  return bestScore <= Math.max(2, Math.floor(name.length / 3)) + 0.5 ? best : undefined;
}

/** The error for a name that is no option at all, with the nearest known name suggested. */
export function unknownOptionError(name: string, origin: Origin): ConfigError {
  const near = nearestOption(name);
  return new ConfigError('UNKNOWN_OPTION', `unknown option${near ? ` (did you mean '${near}'?)` : ''}`, origin, name);
}
