# The guide's hello world, with a bytes body (the guide's str body makes uWSGI send an empty page on Python 3).
def application(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/html')])
    return [b"Hello World"]
