import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tokenize } from '../../src/proxy/conf/lexer.js';
import { parseConf } from '../../src/proxy/conf/parse.js';
import { ProxyConfError } from '../../src/proxy/conf/errors.js';
import { DiskFs } from '../../src/proxy/conf/fs.js';
import { loadConf } from '../../src/proxy/conf/load.js';
import { freePort, proxySync, startProxy, tempDir } from './helpers.js';

function confError(text: string): ProxyConfError {
  try {
    parseConf(text, '/x.conf');
  } catch (e) {
    if (e instanceof ProxyConfError) return e;
    throw e;
  }
  throw new Error('no error');
}

test('config tokens: quotes, escapes, comments and ${var} braces', () => {
  const { tokens } = tokenize('a "b c" \'d\\\'e\' f\\ g # comment\n h${x}y { } ;', 'f');
  assert.deepEqual(
    tokens.map((t) => t.value),
    ['a', 'b c', "d'e", 'f\\ g', 'h${x}y', '{', '}', ';'],
  );
  assert.equal(tokens[4]!.line, 2);
  // A regex keeps its backslashes.
  assert.equal(tokenize('~ \\.php$', 'f').tokens[1]!.value, '\\.php$');
});

test('config blocks nest and every directive records the line nginx reports', () => {
  const nodes = parseConf('http {\n  server {\n    listen 80;\n  }\n}\n', '/x.conf');
  const server = nodes[0]!.block![0]!;
  assert.equal(server.name, 'server');
  assert.deepEqual(server.block![0]!.args, ['80']);
  assert.equal(server.block![0]!.line, 3);
});

test('structural config errors name the file and line', () => {
  assert.match(confError('http {\n}\n}\n').message, /^unexpected "}" in \/x\.conf:3$/);
  assert.match(confError('http {\n listen 80;\n').message, /^unexpected end of file, expecting "}" in \/x\.conf:3$/);
  assert.match(confError('worker_processes 1').message, /expecting ";" or "}"/);
  assert.match(confError('a "b\n').message, /expecting """/);
  assert.match(confError('a "b"c;').message, /^unexpected "c"/);
  assert.match(confError(';').message, /^unexpected ";"/);
});

async function load(dir: string, text: string): Promise<ProxyConfError | undefined> {
  writeFileSync(join(dir, 'nginx.conf'), text);
  try {
    await loadConf({ confFile: join(dir, 'nginx.conf'), prefix: dir + '/', fs: new DiskFs() });
    return undefined;
  } catch (e) {
    if (e instanceof ProxyConfError) return e;
    throw e;
  }
}

test('directive table errors: unknown, wrong context, argument count, duplicate, bad flag', async () => {
  const t = tempDir('conf');
  try {
    const f = join(t.dir, 'nginx.conf');
    const cases: Array<[string, string, string]> = [
      ['events {}\nhttp {\n  foo bar;\n}\n', 'UNKNOWN_DIRECTIVE', `unknown directive "foo" in ${f}:3`],
      ['events {}\nhttp { server { } }\nlisten 80;\n', 'NOT_ALLOWED_HERE', `"listen" directive is not allowed here in ${f}:3`],
      ['http {\n server {\n  root;\n }\n}\n', 'ARG_COUNT', `invalid number of arguments in "root" directive in ${f}:3`],
      ['http {\n root /a;\n root /b;\n}\n', 'DUPLICATE', `"root" directive is duplicate in ${f}:3`],
      ['daemon maybe;\n', 'BAD_VALUE', `invalid value "maybe" in "daemon" directive, it must be "on" or "off" in ${f}:1`],
      ['http {\n server {\n  location / { uwsgi_pass unix:/s; }\n  location = /x { location /x/y {} }\n }\n}\n', 'NOT_ALLOWED_HERE', `location "/x/y" cannot be inside the exact location "/x" in ${f}:4`],
      ['http {\n server {\n  return 200 $nosuchvar;\n }\n}\n', 'BAD_VALUE', `unknown "nosuchvar" variable in ${f}:3`],
      ['http {\n server {\n  listen 80 quic;\n }\n}\n', 'NOT_SUPPORTED', `invalid parameter "quic" in ${f}:3`],
      ['http {\n ssi on;\n}\n', 'NOT_SUPPORTED', `"ssi" directive is not supported by tsgi-proxy in ${f}:2`],
      ['http {\n server {\n  location / {\n   auth_request /x;\n  }\n }\n}\n', 'NOT_SUPPORTED', `"auth_request" directive is not supported by tsgi-proxy in ${f}:4`],
      ['http {\n charset_map koi8-r utf-8 {\n  C0 D18E;\n }\n}\n', 'NOT_SUPPORTED', `"charset_map" to utf-8 is not supported by tsgi-proxy (8-bit tables only) in ${f}:2`],
      ['http {\n server {\n  location / {\n   limit_req_zone $x zone=a:1m rate=1r/s sync;\n  }\n }\n}\n', 'NOT_ALLOWED_HERE', `"limit_req_zone" directive is not allowed here in ${f}:4`],
      ['http {\n server {\n  location ~ ( { }\n }\n}\n', 'BAD_VALUE', `in ${f}:3`],
    ];
    for (const [text, code, message] of cases) {
      const e = await load(t.dir, text);
      assert.ok(e, `expected an error for ${JSON.stringify(text)}`);
      assert.equal(e.code, code, e.message);
      assert.ok(e.message.endsWith(message) || e.message === message, `${e.message} !~ ${message}`);
    }
  } finally {
    t.cleanup();
  }
});

test('include expands globs in sorted order relative to the config directory, and a glob may match nothing', async () => {
  const t = tempDir('inc');
  try {
    mkdirSync(join(t.dir, 'conf.d'));
    writeFileSync(join(t.dir, 'conf.d', 'b.conf'), 'server { listen 127.0.0.1:2; server_name b; }\n');
    writeFileSync(join(t.dir, 'conf.d', 'a.conf'), 'server { listen 127.0.0.1:1; server_name a; }\n');
    writeFileSync(join(t.dir, 'conf.d', '.hidden.conf'), 'broken');
    writeFileSync(join(t.dir, 'nginx.conf'), 'http { include conf.d/*.conf; include none.d/*.conf; }\n');
    const c = await loadConf({ confFile: join(t.dir, 'nginx.conf'), prefix: t.dir + '/', fs: new DiskFs() });
    assert.deepEqual(c.http!.servers.map((s) => s.primaryName), ['a', 'b']);
    const missing = await load(t.dir, 'http { include nothere.conf; }\n');
    assert.equal(missing?.code, 'FILE');
    assert.match(missing!.message, /open\(\) ".*nothere\.conf" failed \(2: No such file or directory\) in .*nginx\.conf:1/);
  } finally {
    t.cleanup();
  }
});

test('uwsgi_params and mime.types are built in when the files are absent', async () => {
  const t = tempDir('builtin');
  try {
    writeFileSync(join(t.dir, 'nginx.conf'), 'http { include mime.types; server { location / { include uwsgi_params; uwsgi_pass 127.0.0.1:9; } } }\n');
    const c = await loadConf({ confFile: join(t.dir, 'nginx.conf'), prefix: t.dir + '/', fs: new DiskFs() });
    const loc = c.http!.servers[0]!.locations[0]!.conf;
    assert.ok(loc.uwsgi.params!.some((p) => p.key === 'PATH_INFO' && p.value.source === '$document_uri'));
    assert.equal(c.http!.loc.types!.get('css'), 'text/css');
    assert.ok(c.files.includes('<built-in>/uwsgi_params'));
  } finally {
    t.cleanup();
  }
});

test('settings are inherited http → server → location, lists only when the level has none', async () => {
  const t = tempDir('inherit');
  try {
    writeFileSync(
      join(t.dir, 'nginx.conf'),
      'http { client_max_body_size 5m; add_header X-A a; server { add_header X-B b; location / { } location /own { add_header X-C c; client_max_body_size 1k; } } }\n',
    );
    const c = await loadConf({ confFile: join(t.dir, 'nginx.conf'), prefix: t.dir + '/', fs: new DiskFs() });
    const [plain, own] = c.http!.servers[0]!.locations;
    assert.equal(plain!.conf.clientMaxBodySize, 5 * 1024 * 1024);
    assert.deepEqual(plain!.conf.addHeaders!.map((h) => h.name), ['X-B']);
    assert.equal(own!.conf.clientMaxBodySize, 1024);
    assert.deepEqual(own!.conf.addHeaders!.map((h) => h.name), ['X-C']);
  } finally {
    t.cleanup();
  }
});

test('keepalive_timeout: the idle time and the optional Keep-Alive header seconds, each inherited on its own', async () => {
  const t = tempDir('keepalive');
  try {
    writeFileSync(
      join(t.dir, 'nginx.conf'),
      'http { keepalive_timeout 75 1m; server { location / { } location /one { keepalive_timeout 500ms; } location /two { keepalive_timeout 10 0; } } server { listen 8081; keepalive_timeout 5; } }\n',
    );
    const c = await loadConf({ confFile: join(t.dir, 'nginx.conf'), prefix: t.dir + '/', fs: new DiskFs() });
    const [plain, one, two] = c.http!.servers[0]!.locations;
    assert.deepEqual([plain!.conf.keepaliveTimeoutMs, plain!.conf.keepaliveHeaderS], [75000, 60]);
    assert.deepEqual([one!.conf.keepaliveTimeoutMs, one!.conf.keepaliveHeaderS], [500, 60]);
    assert.deepEqual([two!.conf.keepaliveTimeoutMs, two!.conf.keepaliveHeaderS], [10000, 0]);
    assert.equal(c.http!.servers[1]!.loc.keepaliveHeaderS, 60);
    writeFileSync(join(t.dir, 'nginx.conf'), 'http { server { } }\n');
    const d = await loadConf({ confFile: join(t.dir, 'nginx.conf'), prefix: t.dir + '/', fs: new DiskFs() });
    assert.deepEqual([d.http!.servers[0]!.loc.keepaliveTimeoutMs, d.http!.servers[0]!.loc.keepaliveHeaderS], [75000, 0]);
    // The header value is in seconds: "ms" is refused there (as nginx does), as is a third value.
    assert.equal((await load(t.dir, 'http { keepalive_timeout 10 500ms; }\n'))?.code, 'BAD_VALUE');
    assert.equal((await load(t.dir, 'http { keepalive_timeout 10 x; }\n'))?.code, 'BAD_VALUE');
    assert.equal((await load(t.dir, 'http { keepalive_timeout 10 60 1; }\n'))?.code, 'ARG_COUNT');
  } finally {
    t.cleanup();
  }
});

test("the guide's nginx.conf passes tsgi-proxy -t", () => {
  const t = tempDir('guide');
  try {
    const conf = join(t.dir, 'nginx.conf');
    writeFileSync(
      conf,
      `user www-data;
worker_processes auto;
pid ${t.dir}/nginx.pid;
events {
    worker_connections 768;
}
http {
    sendfile on;
    tcp_nopush on;
    types_hash_max_size 2048;
    include mime.types;
    default_type application/octet-stream;
    access_log ${t.dir}/access.log;
    error_log ${t.dir}/error.log;
    include /etc/nginx/conf.d/*.conf;
    server {
        listen 80;
        server_name your_domain www.your_domain;
        location / {
            include uwsgi_params;
            uwsgi_pass unix:/run/uwsgi/myapp.sock;
        }
    }
}
`,
    );
    const r = proxySync(['-t', '-c', conf]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, `tsgi-proxy: the configuration file ${conf} syntax is ok\ntsgi-proxy: configuration file ${conf} test is successful\n`);
  } finally {
    t.cleanup();
  }
});

test('a bad config fails -t with one [emerg] line naming file:line, then "test failed", exit 1', () => {
  const t = tempDir('bad');
  try {
    const conf = join(t.dir, 'nginx.conf');
    writeFileSync(conf, 'events {}\nhttp {\n  server {\n    lisen 80;\n  }\n}\n');
    const r = proxySync(['-t', '-c', conf]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `tsgi-proxy: [emerg] unknown directive "lisen" in ${conf}:4\ntsgi-proxy: configuration file ${conf} test failed\n`);
  } finally {
    t.cleanup();
  }
});

test("Debian's own /etc/nginx/nginx.conf, with its default site, passes tsgi-proxy -t", { skip: existsSync('/etc/nginx/nginx.conf') ? false : 'no /etc/nginx/nginx.conf (Debian nginx not installed)' }, () => {
  const r = proxySync(['-t', '-c', '/etc/nginx/nginx.conf']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /test is successful/);
});

test('-T prints every configuration file after the test result', () => {
  const t = tempDir('dump');
  try {
    const conf = join(t.dir, 'nginx.conf');
    writeFileSync(join(t.dir, 'extra.conf'), '# the extra file\n');
    writeFileSync(conf, 'http { include extra.conf; }\n');
    const r = proxySync(['-T', '-c', conf]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`# configuration file ${conf}:\\nhttp \\{ include extra.conf; \\}\\n`));
    assert.match(r.stdout, /# configuration file .*extra\.conf:\n# the extra file\n/);
  } finally {
    t.cleanup();
  }
});

test('-g adds main-context directives and its errors name "command line"', () => {
  const t = tempDir('g');
  try {
    const conf = join(t.dir, 'nginx.conf');
    writeFileSync(conf, 'events {}\n');
    assert.equal(proxySync(['-t', '-c', conf, '-g', 'daemon off; worker_processes 2;']).code, 0);
    const r = proxySync(['-t', '-c', conf, '-g', 'listen 80;']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /\[emerg\] "listen" directive is not allowed here in command line:1/);
  } finally {
    t.cleanup();
  }
});

test('-v and -V print the version; an unknown option is refused', () => {
  assert.match(proxySync(['-v']).stderr, /^tsgi-proxy version: tsgi-proxy\/\d+\.\d+\.\d+\n$/);
  const V = proxySync(['-V']);
  assert.equal(V.code, 0);
  assert.match(V.stderr, /configure arguments: .*--with-http_ssl_module/);
  const bad = proxySync(['-x']);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /invalid option: "x"/);
});

test('-s without a running master reports the missing pid file and exits 1', () => {
  const t = tempDir('sig');
  try {
    const conf = join(t.dir, 'nginx.conf');
    writeFileSync(conf, `pid ${t.dir}/none.pid;\n`);
    const r = proxySync(['-s', 'reload', '-c', conf]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /\[error\] open\(\) ".*none\.pid" failed \(2: No such file or directory\)/);
  } finally {
    t.cleanup();
  }
});

test('tuning of how nginx reads files and schedules workers is accepted (worker_priority is applied), what cannot be honoured is refused', async () => {
  const t = tempDir('tuning');
  try {
    const conf = join(t.dir, 'nginx.conf');
    const port = await freePort();
    writeFileSync(conf, `worker_priority 5;\nworker_cpu_affinity auto;\nthread_pool default threads=4 max_queue=100;\nevents {}\nhttp {\n  access_log off;\n  aio threads;\n  aio_write on;\n  directio 4m;\n  directio_alignment 512;\n  disable_symlinks off;\n  server { listen 127.0.0.1:${port}; location / { return 200 "ok"; } }\n}\n`);
    const ok = proxySync(['-t', '-c', conf]);
    assert.equal(ok.code, 0, ok.stderr);
    const p = await startProxy(t.dir, 'nginx.conf', port);
    try {
      // The worker (the master's child) runs at nice 5; the master keeps its own priority.
      const workers = readFileSync(`/proc/${p.child.pid}/task/${p.child.pid}/children`, 'latin1').trim().split(/\s+/).map(Number);
      assert.ok(workers.length >= 1);
      for (const w of workers) assert.equal(Number(readFileSync(`/proc/${w}/stat`, 'latin1').replace(/^.*\) /, '').split(' ')[16]), 5);
    } finally {
      await p.stop('SIGQUIT');
    }
    for (const [line, msg] of [['disable_symlinks on;', /"disable_symlinks on" .* is not supported by tsgi-proxy in .*nginx\.conf:3/], ['worker_priority 40;', /invalid number "40" in .*nginx\.conf:2/]] as const) {
      writeFileSync(conf, `events {}\n${line.startsWith('worker') ? line : 'http {'}\n${line.startsWith('worker') ? 'http {' : line}\n}\n`);
      const r = proxySync(['-t', '-c', conf]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, msg);
    }
  } finally {
    t.cleanup();
  }
});
