/*
 * The few Linux calls Node does not offer, for the master: sending a datagram on an AF_UNIX socket (systemd's
 * sd_notify protocol, and the syslog logger's /dev/log). Node-API, so one build serves every Node version the
 * package supports.
 */
#include <errno.h>
#include <node_api.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/*
 * notify(path: string, message: string): 0, or -errno. A path starting with '@' is an abstract socket.
 * Never blocks: a receiver whose queue is full (a stuck syslog daemon) gives -EAGAIN instead of holding the master.
 */
static napi_value Notify(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_value result;
  char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
  char message[4096];
  size_t path_len = 0, message_len = 0;
  int rc = 0;

  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2) {
    napi_throw_type_error(env, NULL, "notify(path, message)");
    return NULL;
  }
  if (napi_get_value_string_utf8(env, argv[0], path, sizeof(path), &path_len) != napi_ok ||
      napi_get_value_string_utf8(env, argv[1], message, sizeof(message), &message_len) != napi_ok) {
    napi_throw_type_error(env, NULL, "notify(path, message): strings expected");
    return NULL;
  }

  struct sockaddr_un addr;
  memset(&addr, 0, sizeof(addr));
  addr.sun_family = AF_UNIX;
  if (path_len == 0 || path_len >= sizeof(addr.sun_path)) {
    rc = -EINVAL;
  } else {
    memcpy(addr.sun_path, path, path_len);
    if (path[0] == '@') addr.sun_path[0] = '\0';
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      rc = -errno;
    } else {
      socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + path_len);
      if (sendto(fd, message, message_len, MSG_NOSIGNAL | MSG_DONTWAIT, (struct sockaddr *)&addr, len) < 0) rc = -errno;
      close(fd);
    }
  }
  napi_create_int32(env, rc, &result);
  return result;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "notify", NAPI_AUTO_LENGTH, Notify, NULL, &fn);
  napi_set_named_property(env, exports, "notify", fn);
  return exports;
}
