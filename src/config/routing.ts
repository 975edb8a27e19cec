/**
 * uWSGI's internal routing (route, route-run, route-if, route-label, route-host, ...): the rules read from the
 * options, in the order they were given, checked completely here so that a mistake is one line naming the file
 * and line before any worker starts. The rules run per request in the Python worker (python/tsgi_worker/routing.py),
 * which receives them as JSON. What is supported and how it differs from uWSGI: docs/routing.md.
 */
import { ConfigError } from './errors.js';
import { describeOrigin, type Origin } from './origin.js';

/** The options that add a rule, and the request variable a regexp rule matches (uWSGI's subjects). */
export const ROUTE_SUBJECTS: Readonly<Record<string, string>> = {
  'route': 'PATH_INFO',
  'route-host': 'HTTP_HOST',
  'route-uri': 'REQUEST_URI',
  'route-qs': 'QUERY_STRING',
  'route-remote-addr': 'REMOTE_ADDR',
  'route-user-agent': 'HTTP_USER_AGENT',
  'route-referer': 'HTTP_REFERER',
  'route-remote-user': 'REMOTE_USER',
};

export const ROUTE_OPTION_NAMES: readonly string[] = [...Object.keys(ROUTE_SUBJECTS), 'route-run', 'route-if', 'route-if-not', 'route-label'];

/**
 * final-route and its variants: uWSGI 2.0.21 runs this table after the response is sent and before the request's
 * log line (a logvar set there is in the line, donotlog drops it). final-route-status is not here (refused).
 */
export const FINAL_ROUTE_OPTION_NAMES: readonly string[] = ROUTE_OPTION_NAMES.map((n) => `final-${n}`);

/** The actions that mean something once the response is out: the log's and the table's own flow. */
const FINAL_ACTIONS = new Set(['log', 'logvar', 'donotlog', 'goto', 'continue', 'break']);

/**
 * error-route* and response-route*: uWSGI 2.0.21 runs the error table when a response's status is set (every
 * status, the app's or a rule's answer) and the response table once, when the headers are written. Each also has a
 * -status variant (CODE read as C's atoi, so `^404$` is 0 and never matches). The actions tsgi runs there: header
 * edits, the log's, addvar, the table's flow, and an answer of their own (break, return) that replaces the app's.
 */
export const ERROR_ROUTE_OPTION_NAMES: readonly string[] = [...ROUTE_OPTION_NAMES, 'route-status'].map((n) => `error-${n}`);
export const RESPONSE_ROUTE_OPTION_NAMES: readonly string[] = [...ROUTE_OPTION_NAMES, 'route-status'].map((n) => `response-${n}`);
const LATE_ACTIONS = new Set(['addheader', 'delheader', 'log', 'logvar', 'donotlog', 'addvar', 'goto', 'continue', 'break', 'return']);

/** C's atoi: leading blanks, a sign, digits; anything else gives 0. */
function atoi(s: string): number {
  const m = /^[ \t\n\v\f\r]*([+-]?\d+)/.exec(s);
  return m ? Number.parseInt(m[1]!, 10) | 0 : 0;
}

/** One rule as the worker runs it. Texts are left unexpanded (${VAR} and $N are expanded per request). */
export interface RouteRule {
  /** A route-label: a place `goto` jumps to; nothing else is set. */
  label?: string;
  /** A regexp rule: the request variable matched and the pattern (Python `re` syntax, as PCRE's). */
  subject?: string;
  pattern?: string;
  /** route-if / route-if-not: the condition (canonical name) and its one or two arguments. */
  cond?: string;
  negate?: boolean;
  args?: string[];
  /** The action (canonical name) and its argument. */
  action?: string;
  arg?: string;
  /** return: the reason phrase of the status. */
  reason?: string;
  /** Where the rule was written, for the worker's log lines: `file:line route = ...`. */
  where: string;
}

interface ActionDef {
  canonical: string;
  /** Checks the argument; returns what is wrong, or undefined. */
  check?: (arg: string) => string | undefined;
}

const hasVars = (s: string): boolean => /\$\{|\$\d/.test(s);
const needsEq = (what: string) => (arg: string): string | undefined =>
  arg.indexOf('=') > 0 ? undefined : `expects ${what}=VALUE`;
const notEmpty = (what: string) => (arg: string): string | undefined => (arg.trim() ? undefined : `expects ${what}`);

/**
 * router_cache's KEY=VALUE arguments (docs/cache.md): the keys uWSGI 2.0.21 knows for the action, `key` required.
 * Keys tsgi does not honour are refused by name.
 */
const cacheArgs = (known: readonly string[], refused: Readonly<Record<string, string>> = {}) => (arg: string): string | undefined => {
  let hasKey = false;
  for (const part of arg.split(',')) {
    if (!part) continue;
    const eq = part.indexOf('=');
    const k = eq < 0 ? part : part.slice(0, eq);
    if (refused[k]) return `key '${k}': ${refused[k]}`;
    if (!known.includes(k)) return `has an unknown key '${k}' (uWSGI knows ${known.join(', ')})`;
    if (k === 'key' && eq > 0 && part.length > eq + 1) hasKey = true;
  }
  return hasKey ? undefined : 'needs key=KEY';
};
const CACHE_MATH = cacheArgs(['key', 'value', 'name', 'expires']);

const ACTIONS: Readonly<Record<string, ActionDef>> = {
  // router_cache (docs/cache.md): the caches of cache2/cache, from the rules.
  cache: {
    canonical: 'cache',
    check: cacheArgs(['key', 'content_type', 'content_encoding', 'mime', 'name', 'no_offload', 'no_content_length', 'no_cl', 'nocl']),
  },
  cachestore: { canonical: 'cachestore', check: cacheArgs(['key', 'gzip', 'name', 'value', 'status', 'code', 'expires']) },
  'cache-store': { canonical: 'cachestore', check: cacheArgs(['key', 'gzip', 'name', 'value', 'status', 'code', 'expires']) },
  cachevar: { canonical: 'cachevar', check: (arg) => cacheArgs(['key', 'var', 'name', 'as_num'])(arg) ?? (/(^|,)var=./.test(arg) ? undefined : 'needs var=NAME') },
  cacheset: { canonical: 'cacheset', check: (arg) => cacheArgs(['key', 'value', 'name', 'expires'])(arg) ?? (/(^|,)value=/.test(arg) ? undefined : 'needs value=VALUE') },
  cacheinc: { canonical: 'cacheinc', check: CACHE_MATH },
  cachedec: { canonical: 'cachedec', check: CACHE_MATH },
  cachemul: { canonical: 'cachemul', check: CACHE_MATH },
  cachediv: { canonical: 'cachediv', check: CACHE_MATH },
  continue: { canonical: 'continue' },
  last: { canonical: 'continue' },
  break: { canonical: 'break' },
  return: { canonical: 'return' },
  'break-with-status': { canonical: 'return' },
  goto: { canonical: 'goto', check: notEmpty('a label') },
  log: { canonical: 'log' },
  logvar: { canonical: 'logvar', check: needsEq('NAME') },
  donotlog: { canonical: 'donotlog' },
  addvar: { canonical: 'addvar', check: needsEq('KEY') },
  addheader: {
    canonical: 'addheader',
    check: (arg) => (hasVars(arg) || /^[!#$%&'*+.^_`|~0-9A-Za-z-]+:/.test(arg) ? undefined : "expects 'Name: value'"),
  },
  delheader: { canonical: 'delheader', check: notEmpty('a header name') },
  remheader: { canonical: 'delheader', check: notEmpty('a header name') },
  redirect: { canonical: 'redirect', check: notEmpty('a URL') },
  'redirect-302': { canonical: 'redirect', check: notEmpty('a URL') },
  'redirect-permanent': { canonical: 'redirect-permanent', check: notEmpty('a URL') },
  'redirect-301': { canonical: 'redirect-permanent', check: notEmpty('a URL') },
  rewrite: { canonical: 'rewrite', check: notEmpty('a path') },
  'rewrite-last': { canonical: 'rewrite-last', check: notEmpty('a path') },
  basicauth: { canonical: 'basicauth', check: (arg) => (arg.includes(',') ? undefined : 'expects REALM,USER:PASSWORD or REALM,HTPASSWD-FILE') },
  'basicauth-next': { canonical: 'basicauth-next', check: (arg) => (arg.includes(',') ? undefined : 'expects REALM,USER:PASSWORD or REALM,HTPASSWD-FILE') },
  setmethod: { canonical: 'setmethod', check: notEmpty('a method') },
  seturi: { canonical: 'seturi' },
  setpathinfo: { canonical: 'setpathinfo' },
  setscriptname: { canonical: 'setscriptname' },
  setdocroot: { canonical: 'setdocroot' },
  sethome: { canonical: 'sethome' },
  setremoteaddr: { canonical: 'setremoteaddr' },
  setuser: { canonical: 'setuser' },
  setscheme: { canonical: 'setscheme' },
  fixpathinfo: { canonical: 'fixpathinfo' },
  chdir: { canonical: 'chdir', check: notEmpty('a directory') },
};

/** The reason phrases uWSGI 2.0.21 knows (its `return` sends nothing for another code), as it spells them. */
const UWSGI_REASONS: Readonly<Record<string, string>> = {
  100: 'Continue', 101: 'Switching Protocols', 200: 'OK', 201: 'Created', 202: 'Accepted', 203: 'Non-Authoritative Information',
  204: 'No Content', 205: 'Reset Content', 206: 'Partial Content', 300: 'Multiple Choices', 301: 'Moved Permanently', 302: 'Found',
  303: 'See Other', 304: 'Not Modified', 305: 'Use Proxy', 307: 'Temporary Redirect', 400: 'Bad Request', 401: 'Unauthorized',
  402: 'Payment Required', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed', 406: 'Not Acceptable',
  407: 'Proxy Authentication Required', 408: 'Request Timeout', 409: 'Conflict', 410: 'Gone', 411: 'Length Required',
  412: 'Precondition Failed', 413: 'Request Entity Too Large', 414: 'Request-URI Too Long', 415: 'Unsupported Media Type',
  416: 'Requested Range Not Satisfiable', 417: 'Expectation Failed', 418: "I'm a teapot", 422: 'Unprocessable Entity', 425: 'Too Early',
  426: 'Upgrade Required', 428: 'Precondition Required', 429: 'Too Many Requests', 431: 'Request Header Fields Too Large',
  451: 'Unavailable For Legal Reasons', 500: 'Internal Server Error', 501: 'Not Implemented', 502: 'Bad Gateway',
  503: 'Service Unavailable', 504: 'Gateway Timeout', 505: 'HTTP Version Not Supported', 509: 'Bandwidth Limit Exceeded',
  511: 'Network Authentication Required',
};

/** Actions uWSGI's plugins provide that tsgi does not: named with their plugin in the error. */
const PLUGIN_ACTIONS: Readonly<Record<string, string>> = {
  'cache-continue': 'router_cache',
  uwsgi: 'router_uwsgi', http: 'router_http', httpdumb: 'router_http', rpc: 'rpc', rpcnext: 'rpc', rpcret: 'rpc', rpcvar: 'rpc',
  rpcraw: 'rpc', rpcblob: 'rpc', static: 'router_static', file: 'router_static', sendfile: 'router_static', fastfile: 'router_static',
  gzip: 'transformation_gzip', chunked: 'transformation_chunked', template: 'transformation_template', toupper: 'transformation_toupper',
  tofile: 'transformation_tofile', offload: 'transformation_offload', memcached: 'router_memcached', memcachedstore: 'router_memcached',
  redis: 'router_redis', redisstore: 'router_redis', xslt: 'xslt', toxslt: 'xslt', xmldir: 'router_xmldir', expires: 'router_expires',
  hash: 'router_hash', metricinc: 'router_metrics', metricdec: 'router_metrics', metricset: 'router_metrics', metricmul: 'router_metrics',
  metricdiv: 'router_metrics', radius: 'router_radius', ldapauth: 'ldap', spnego: 'router_spnego', ssi: 'ssi', cgi: 'cgi', gridfs: 'gridfs',
};

interface CondDef {
  canonical: string;
  /** Two arguments, `A;B`. */
  pair: boolean;
}

const CONDITIONS: Readonly<Record<string, CondDef>> = {
  equal: { canonical: 'equal', pair: true }, isequal: { canonical: 'equal', pair: true }, eq: { canonical: 'equal', pair: true },
  '==': { canonical: 'equal', pair: true },
  startswith: { canonical: 'startswith', pair: true }, endswith: { canonical: 'endswith', pair: true },
  contains: { canonical: 'contains', pair: true }, contain: { canonical: 'contains', pair: true },
  regexp: { canonical: 'regexp', pair: true }, re: { canonical: 'regexp', pair: true },
  ishigher: { canonical: 'ishigher', pair: true }, '>': { canonical: 'ishigher', pair: true },
  islower: { canonical: 'islower', pair: true }, '<': { canonical: 'islower', pair: true },
  ishigherequal: { canonical: 'ishigherequal', pair: true }, '>=': { canonical: 'ishigherequal', pair: true },
  islowerequal: { canonical: 'islowerequal', pair: true }, '<=': { canonical: 'islowerequal', pair: true },
  ipv4in: { canonical: 'ipv4in', pair: true }, ipv6in: { canonical: 'ipv6in', pair: true },
  empty: { canonical: 'empty', pair: false },
  isfile: { canonical: 'isfile', pair: false }, isdir: { canonical: 'isdir', pair: false }, islink: { canonical: 'islink', pair: false },
  isexec: { canonical: 'isexec', pair: false }, exists: { canonical: 'exists', pair: false },
};

/** ${name[key]} route variables tsgi computes (uWSGI 2.0's set, less mime). */
const ROUTE_VARS = new Set(['cookie', 'qs', 'time', 'httptime', 'uwsgi', 'base64', 'hex']);
const ROUTE_VAR_KEYS: Readonly<Record<string, readonly string[]>> = { time: ['unix', 'micros'], uwsgi: ['wid', 'pid', 'uuid', 'sor'] };

/** Python's named groups in PCRE/Python spelling, made readable by JavaScript's RegExp for the check. */
function jsPattern(p: string): string {
  return p.replace(/\(\?P</g, '(?<').replace(/\(\?P=(\w+)\)/g, '\\k<$1>').replace(/\(\?P>(\w+)\)/g, '');
}

function checkPattern(pattern: string, fail: (why: string) => ConfigError): void {
  try {
    new RegExp(jsPattern(pattern));
  } catch (err) {
    throw fail(`bad regular expression '${pattern}': ${(err as Error).message.replace(/^Invalid regular expression: /, '')}`);
  }
}

/** Checks the ${...} references of a text: only request variables and the route variables tsgi computes. */
function checkVars(text: string, fail: (why: string) => ConfigError): void {
  for (const m of text.matchAll(/\$\{([^}]*)\}/g)) {
    const key = m[1]!;
    const bracket = key.indexOf('[');
    if (bracket < 0 || !key.endsWith(']')) continue;
    const name = key.slice(0, bracket);
    if (!ROUTE_VARS.has(name)) throw fail(`route variable \${${key}} is not supported by tsgi (supported: \${VAR} and ${[...ROUTE_VARS].map((v) => `\${${v}[...]}`).join(', ')})`);
    const keys = ROUTE_VAR_KEYS[name];
    const sub = key.slice(bracket + 1, -1);
    if (keys && !keys.includes(sub)) throw fail(`route variable \${${key}}: tsgi knows ${keys.map((k) => `\${${name}[${k}]}`).join(', ')}`);
  }
}

/** Reads the rules from the route options, in the order they were given. */
export function readRoutes(entries: ReadonlyArray<{ option: string; value: string; origin: Origin }>, chain: 'main' | 'final' | 'error' | 'response' = 'main'): RouteRule[] | undefined {
  if (!entries.length) return undefined;
  const rules: RouteRule[] = [];
  const pendingGotos: Array<{ index: number; label: string; fail: (why: string) => ConfigError }> = [];
  for (const { option: given, value, origin } of entries) {
    const option = chain === 'main' ? given : given.slice(chain.length + 1);
    const fail = (why: string): ConfigError => new ConfigError(why.startsWith('!') ? 'NOT_IMPLEMENTED' : 'BAD_VALUE', why.replace(/^!/, ''), origin, given);
    const where = `${describeOrigin(origin)} ${given} = ${value}`;
    if (option === 'route-label') {
      if (!value.trim()) throw fail('expects a label name');
      rules.push({ label: value, where });
      continue;
    }
    const rule: RouteRule = { where };
    let command = value;
    let regexpCaptures = false;
    if (option !== 'route-run') {
      const space = value.indexOf(' ');
      if (space < 0) throw fail(`expects '${option === 'route-if' || option === 'route-if-not' ? 'CONDITION:ARGS' : 'REGEXP'} ACTION:ARG' (no space found)`);
      const head = value.slice(0, space);
      command = value.slice(space + 1);
      if (option === 'route-status') {
        // uWSGI compares the response's status with atoi(CODE): '404' is 404, '^404$' is 0 (never).
        rule.cond = 'status';
        rule.args = [String(atoi(head))];
      } else if (option === 'route-if' || option === 'route-if-not') {
        const colon = head.indexOf(':');
        if (colon < 0) throw fail(`condition '${head}' expects NAME:ARGS`);
        const name = head.slice(0, colon);
        const def = CONDITIONS[name];
        if (!def) throw fail(`!route condition '${name}' is not supported by tsgi (supported: ${Object.keys(CONDITIONS).join(', ')})`);
        const text = head.slice(colon + 1);
        rule.cond = def.canonical;
        rule.negate = option === 'route-if-not';
        if (def.pair) {
          const semi = text.indexOf(';');
          if (semi < 0) throw fail(`condition '${name}' expects two values separated by ';' (uWSGI would take it as never true)`);
          rule.args = [text.slice(0, semi), text.slice(semi + 1)];
          if (def.canonical === 'regexp') {
            checkPattern(rule.args[1]!, fail);
            regexpCaptures = true;
          }
        } else {
          rule.args = [text];
        }
        for (const a of rule.args) checkVars(a, fail);
      } else {
        rule.subject = ROUTE_SUBJECTS[option]!;
        rule.pattern = head;
        checkPattern(head, fail);
        regexpCaptures = true;
      }
    }
    const colon = command.indexOf(':');
    if (colon < 0) throw fail(`action '${command}' expects NAME:ARG (write '${command}:' for an action without argument)`);
    const name = command.slice(0, colon);
    const arg = command.slice(colon + 1);
    const def = ACTIONS[name];
    if (!def) {
      const plugin = PLUGIN_ACTIONS[name];
      throw fail(`!route action '${name}'${plugin ? ` (uWSGI's ${plugin} plugin)` : ''} is not supported by tsgi (see docs/routing.md)`);
    }
    if (chain === 'final' && !FINAL_ACTIONS.has(def.canonical)) {
      throw fail(`!action '${name}' cannot run in a final route: final routes run after the response is sent, where tsgi runs ${[...FINAL_ACTIONS].join(', ')} (docs/routing.md)`);
    }
    if (chain === 'final' && def.canonical === 'break' && arg.length > 0) {
      throw fail(`!action 'break' with a status cannot run in a final route: the response is already sent (write 'break:')`);
    }
    if ((chain === 'error' || chain === 'response') && !LATE_ACTIONS.has(def.canonical)) {
      throw fail(`!action '${name}' cannot run in ${chain === 'error' ? 'an error route' : 'a response route'}: tsgi runs ${[...LATE_ACTIONS].join(', ')} there (docs/routing.md)`);
    }
    const bad = def.check?.(arg);
    if (bad) throw fail(`action '${name}' ${bad}`);
    if (!regexpCaptures && /\$\d/.test(arg)) {
      throw fail(`action '${command}' uses $N but this rule has no regular expression to capture from (uWSGI crashes on it)`);
    }
    checkVars(arg, fail);
    rule.action = def.canonical;
    rule.arg = arg;
    if (def.canonical === 'return') {
      const code = arg.trim();
      const reason = UWSGI_REASONS[code];
      if (!reason) throw fail(`action '${name}' expects an HTTP status code uWSGI knows a reason phrase for (it sends nothing for '${arg}')`);
      rule.arg = code;
      rule.reason = reason;
    }
    if (def.canonical === 'break' && arg.length > 0 && arg.length < 3) {
      throw fail(`action 'break' expects nothing or a status line such as 'break:403 Forbidden' (uWSGI ignores '${arg}')`);
    }
    if (def.canonical === 'goto' && !hasVars(arg)) pendingGotos.push({ index: rules.length, label: arg, fail });
    rules.push(rule);
  }
  for (const g of pendingGotos) {
    // uWSGI looks the label up from the top of the table and only jumps forward.
    const at = rules.findIndex((r) => r.label === g.label);
    if (at < 0) throw g.fail(`goto: no route-label '${g.label}'`);
    if (at <= g.index) throw g.fail(`goto: route-label '${g.label}' comes before this rule; goto only jumps forward`);
  }
  return rules;
}

/**
 * collect-header / pull-header = HEADER VAR: a response header's value copied into the request variable VAR (for
 * ${VAR} in the error and response routes). pull-header also keeps the header out of the response.
 */
export function readHeaderVars(entries: ReadonlyArray<{ value: string; origin: Origin }>, option: string): Array<[string, string]> | undefined {
  if (!entries.length) return undefined;
  return entries.map(({ value, origin }) => {
    const m = /^\s*(\S+)\s+(\S+)\s*$/.exec(value);
    if (!m) throw new ConfigError('BAD_VALUE', `bad value '${value}': expected HEADER VAR (a response header name and a variable name)`, origin, option);
    return [m[1]!, m[2]!] as [string, string];
  });
}
