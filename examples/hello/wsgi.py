# The guide's app, as written there (Python 2 style: the body is a str). On Python 3 uWSGI answers it with
# an empty page; tsgi serves it as UTF-8 and says once in the log how to fix it.
def application(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/html')])
    return ["<h1 style='color:blue'>Hello There!</h1>"]
