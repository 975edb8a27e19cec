/**
 * Files every nginx installation ships beside nginx.conf, built in so `include uwsgi_params;` and
 * `include mime.types;` work where the files are absent. A file on disk at the included path wins.
 */

const UWSGI_PARAMS = `# tsgi-proxy built-in uwsgi_params: the CGI variables a uwsgi backend expects.
uwsgi_param QUERY_STRING $query_string;
uwsgi_param REQUEST_METHOD $request_method;
uwsgi_param CONTENT_TYPE $content_type;
uwsgi_param CONTENT_LENGTH $content_length;
uwsgi_param REQUEST_URI $request_uri;
uwsgi_param PATH_INFO $document_uri;
uwsgi_param DOCUMENT_ROOT $document_root;
uwsgi_param SERVER_PROTOCOL $server_protocol;
uwsgi_param REQUEST_SCHEME $scheme;
uwsgi_param HTTPS $https if_not_empty;
uwsgi_param REMOTE_ADDR $remote_addr;
uwsgi_param REMOTE_PORT $remote_port;
uwsgi_param SERVER_PORT $server_port;
uwsgi_param SERVER_NAME $server_name;
`;

// Extension → media type, grouped by type. The common web set; add your own with `types {}`. tsgi's own
// static files fall back on it too (src/static/files.ts).
export const BUILTIN_MIME_TYPES: ReadonlyArray<readonly [string, string]> = [
  ['text/html', 'html htm shtml'],
  ['text/css', 'css'],
  ['text/xml', 'xml'],
  ['image/gif', 'gif'],
  ['image/jpeg', 'jpeg jpg'],
  ['application/javascript', 'js mjs'],
  ['application/atom+xml', 'atom'],
  ['application/rss+xml', 'rss'],
  ['text/mathml', 'mml'],
  ['text/plain', 'txt'],
  ['text/vnd.sun.j2me.app-descriptor', 'jad'],
  ['text/vnd.wap.wml', 'wml'],
  ['text/x-component', 'htc'],
  ['text/markdown', 'md'],
  ['text/csv', 'csv'],
  ['image/avif', 'avif'],
  ['image/png', 'png'],
  ['image/svg+xml', 'svg svgz'],
  ['image/tiff', 'tif tiff'],
  ['image/vnd.wap.wbmp', 'wbmp'],
  ['image/webp', 'webp'],
  ['image/x-icon', 'ico'],
  ['image/x-jng', 'jng'],
  ['image/x-ms-bmp', 'bmp'],
  ['font/woff', 'woff'],
  ['font/woff2', 'woff2'],
  ['application/java-archive', 'jar war ear'],
  ['application/json', 'json'],
  ['application/manifest+json', 'webmanifest'],
  ['application/mac-binhex40', 'hqx'],
  ['application/msword', 'doc'],
  ['application/pdf', 'pdf'],
  ['application/postscript', 'ps eps ai'],
  ['application/rtf', 'rtf'],
  ['application/vnd.apple.mpegurl', 'm3u8'],
  ['application/vnd.ms-excel', 'xls'],
  ['application/vnd.ms-fontobject', 'eot'],
  ['application/vnd.ms-powerpoint', 'ppt'],
  ['application/vnd.oasis.opendocument.text', 'odt'],
  ['application/vnd.oasis.opendocument.spreadsheet', 'ods'],
  ['application/vnd.oasis.opendocument.presentation', 'odp'],
  ['application/vnd.openxmlformats-officedocument.wordprocessingml.document', 'docx'],
  ['application/vnd.openxmlformats-officedocument.spreadsheetml.sheet', 'xlsx'],
  ['application/vnd.openxmlformats-officedocument.presentationml.presentation', 'pptx'],
  ['application/wasm', 'wasm'],
  ['application/x-7z-compressed', '7z'],
  ['application/x-bittorrent', 'torrent'],
  ['application/x-java-jnlp-file', 'jnlp'],
  ['application/x-perl', 'pl pm'],
  ['application/x-rar-compressed', 'rar'],
  ['application/x-shockwave-flash', 'swf'],
  ['application/x-tcl', 'tcl tk'],
  ['application/x-x509-ca-cert', 'der pem crt'],
  ['application/x-xpinstall', 'xpi'],
  ['application/xhtml+xml', 'xhtml'],
  ['application/xspf+xml', 'xspf'],
  ['application/zip', 'zip'],
  ['application/gzip', 'gz'],
  ['application/x-tar', 'tar'],
  ['application/octet-stream', 'bin exe dll deb dmg iso img msi msp msm'],
  ['audio/midi', 'mid midi kar'],
  ['audio/mpeg', 'mp3'],
  ['audio/ogg', 'ogg'],
  ['audio/x-m4a', 'm4a'],
  ['audio/x-realaudio', 'ra'],
  ['audio/wav', 'wav'],
  ['video/3gpp', '3gpp 3gp'],
  ['video/mp2t', 'ts'],
  ['video/mp4', 'mp4'],
  ['video/mpeg', 'mpeg mpg'],
  ['video/quicktime', 'mov'],
  ['video/webm', 'webm'],
  ['video/x-flv', 'flv'],
  ['video/x-m4v', 'm4v'],
  ['video/x-matroska', 'mkv'],
  ['video/x-ms-wmv', 'wmv'],
  ['video/x-msvideo', 'avi'],
];

const MIME_TYPES = `# tsgi-proxy built-in mime.types\ntypes {\n${BUILTIN_MIME_TYPES.map(([t, e]) => `    ${t} ${e};`).join('\n')}\n}\n`;

export const BUILTIN_FILES: Record<string, string> = {
  uwsgi_params: UWSGI_PARAMS,
  'mime.types': MIME_TYPES,
};
