// The JS hello app of the benchmark: node's (req, res) listener, served as it is by both sides.
const body = Buffer.from('Hello World!');
export default function hello(req, res) {
  res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': body.length });
  res.end(body);
}
