// The bare peer: node:cluster with N workers, each a node:http server running hello.mjs.
// Usage: node cluster.mjs PORT WORKERS
import cluster from 'node:cluster';
import http from 'node:http';
import hello from './hello.mjs';

const [port, workers] = process.argv.slice(2).map(Number);
if (cluster.isPrimary) {
  let ready = 0;
  for (let i = 0; i < workers; i++) cluster.fork().on('listening', () => { if (++ready === workers) console.log('ready'); });
  process.on('SIGTERM', () => { for (const w of Object.values(cluster.workers)) w.kill(); process.exit(0); });
} else {
  http.createServer(hello).listen(port, '127.0.0.1');
}
