// The same hello as application(environ, start_response), for tsgi's WSGI-style contract.
export function application(environ, start_response) {
  start_response('200 OK', [['Content-Type', 'text/plain']]);
  return ['Hello World!'];
}
