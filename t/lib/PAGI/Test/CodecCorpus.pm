package PAGI::Test::CodecCorpus;
use v5.32;
use warnings;
use experimental 'signatures';
use Exporter 'import';

our @EXPORT_OK = qw(requests bad_requests limit_sets chunked_bodies bad_chunked responses
  chunk_datas trailer_sets mutate canon strip_date);

# One corpus for the HTTP/1.1 codec, fed to both backends by t/30-codec-differential.t
# (and used by benches/codec.pl). Entries are [name, bytes] or [name, args...].

my $BROWSER = join '', map "$_\r\n",
  'GET /articles/2024/rust-and-perl.html?utm_source=feed&x=%20y HTTP/1.1',
  'Host: www.example.org',
  'User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0',
  'Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8',
  'Accept-Language: en-GB,en;q=0.7,fr;q=0.3',
  'Accept-Encoding: gzip, deflate, br, zstd',
  'Referer: https://www.example.org/articles/',
  'Connection: keep-alive',
  'Cookie: session=4f2a9c1e8b7d6a5f; theme=dark; consent=yes',
  '';

my $WRK = "GET / HTTP/1.1\r\nHost: localhost:5000\r\n\r\n";

# Valid requests (some followed by the start of the next one)
sub requests () {
  return (
    ['browser GET, 8 headers', $BROWSER],
    ['wrk GET', $WRK],
    ['wrk GET, pipelined', $WRK x 3],
    ['POST with body', "POST /submit HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\n\r\na=1&b=2"],
    ['POST, equal content-length list', "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 003\r\nContent-Length: 3\r\n\r\nabc"],
    ['chunked POST', "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"],
    ['chunked, odd spelling', "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , CHUNKED ,\r\nTransfer-Encoding:\r\n\r\n"],
    ['websocket upgrade', "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n"],
    ['upgrade without connection: upgrade', "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n\r\n"],
    ['connection: upgrade without upgrade', "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n\r\n"],
    ['last upgrade wins, obs-text lowercased as bytes', "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: h2c\r\nUpgrade: WS\xC0\xDE\r\n\r\n"],
    ['SSE accept', "GET /events HTTP/1.1\r\nHost: a\r\nAccept: text/html\r\nAccept: Text/Event-Stream\r\nCache-Control: no-cache\r\n\r\n"],
    ['expect 100-continue', "PUT /f HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue \r\nContent-Length: 10\r\n\r\n"],
    ['expect 100-continue, HTTP/1.0', "PUT /f HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n"],
    ['expect something else', "PUT /f HTTP/1.1\r\nHost: a\r\nExpect: 100-continue, x\r\n\r\n"],
    ['HTTP/1.0 keep-alive', "GET /old HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: a\r\n\r\n"],
    ['HTTP/1.0, no host', "GET / HTTP/1.0\r\n\r\n"],
    ['HTTP/1.0 keep-alive then close', "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"],
    ['HTTP/1.1 connection close', "GET / HTTP/1.1\r\nHost: a\r\nConnection: foo\r\nConnection: CLOSE\r\n\r\n"],
    ['absolute-form', "GET http://example.com:8080/a/b?x=1&y=%41 HTTP/1.1\r\nHost: example.com\r\n\r\n"],
    ['absolute-form, no path', "GET https://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n"],
    ['absolute-form, query without path', "GET http://example.com?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"],
    ['absolute-form, slash in the query', "GET h+t.t-p://host?q=/x?y HTTP/1.1\r\nHost: a\r\n\r\n"],
    ['absolute-form, empty authority', "GET http:///p HTTP/1.1\r\nHost: a\r\n\r\n"],
    ['asterisk', "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"],
    ['percent-encoded UTF-8 path', "GET /caf%C3%A9/%E2%82%AC/%F0%9F%98%80?q=%C3%A9 HTTP/1.1\r\nHost: a\r\n\r\n"],
    ['raw UTF-8 path', "GET /caf\xC3\xA9 HTTP/1.1\r\nHost: a\r\n\r\n"],
    ['invalid UTF-8 path (lone byte)', "GET /caf%E9 HTTP/1.1\r\nHost: a\r\n\r\n"],
    ['invalid UTF-8 path (overlong)', "GET /%C0%AF HTTP/1.1\r\nHost: a\r\n\r\n"],
    ['invalid UTF-8 path (surrogate)', "GET /%ED%A0%80 HTTP/1.1\r\nHost: a\r\n\r\n"],
    ['invalid UTF-8 path (over U+10FFFF)', "GET /%F4%90%80%80 HTTP/1.1\r\nHost: a\r\n\r\n"],
    ['UTF-8 noncharacter path', "GET /%EF%BF%BE HTTP/1.1\r\nHost: a\r\n\r\n"],
    ['malformed percent escapes', "GET /a%zz%4%%41%2F%00 HTTP/1.1\r\nHost: a\r\n\r\n"],
    ['fragment and empty query', "GET /p#f? HTTP/1.1\r\nHost: a\r\n\r\n"],
    ['double question mark', "GET /?? HTTP/1.1\r\nHost: a\r\n\r\n"],
    ['cookies merged', "GET / HTTP/1.1\r\ncookie: a=1\r\nHost: h\r\nCOOKIE: b=2\r\nX-A: 1\r\nCookie: \r\nCookie:c=3\r\n\r\n"],
    ['header whitespace trimmed, tabs inside kept', "GET / HTTP/1.1\r\nHost: \t a \t\r\nX-Sp:  x \t y  \r\nX-E:\r\nX-O: \x80\xFF\t!\r\n\r\n"],
    ['bare LF line ends', "GET / HTTP/1.1\nHost: a\nX: y\n\n"],
    ['mixed line ends', "GET / HTTP/1.1\r\nHost: a\nX: y\r\n\n"],
    ['leading empty lines', "\r\n\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"],
    ['lowercase method, unusual tchars', "m-!#\$%&'*+.^_`|~9 /x HTTP/1.1\r\nHost: a\r\n\r\n"],
    ['duplicate headers kept in order', "GET / HTTP/1.1\r\nX: 1\r\nHost: a\r\nx: 2\r\nX: 3\r\n\r\n"],
    ['sec-websocket fields, last wins', "GET / HTTP/1.1\r\nHost: a\r\nSec-WebSocket-Key: k1\r\nSec-WebSocket-Key:  k2 \r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Version: 13\r\n\r\n"],
    ['18-digit content-length', "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 999999999999999999\r\n\r\n"],
    ['empty host', "GET / HTTP/1.1\r\nHost:\r\n\r\n"],
    ['long, uppercase and known names', "GET / HTTP/1.1\r\nHOST: a\r\nX-A-Very-Long-Header-Name-Beyond-The-Known-Ones: 1\r\nCONTENT-TYPE: x\r\nSec-WebSocket-Extensions: y\r\nUpgrade-Insecure-Requestz: 1\r\nTE: trailers\r\n\r\n"],
    ['every known method', join('', map "$_ / HTTP/1.1\r\nHost: a\r\n\r\n", qw(GET HEAD POST PUT DELETE CONNECT OPTIONS TRACE PATCH))],
    ['tabs and obs-text around values', "GET / HTTP/1.1\r\nHost: a\r\nX:\t\t\x80v\t\x80\t \r\nY: \t\r\n\r\n"],
    # The query is split off the whole target first: absolute-form keeps it
    ['absolute-form, empty query, no path', "GET http://h? HTTP/1.1\r\nHost: a\r\n\r\n"],
    ['absolute-form, query with a slash, no path', "GET http://h?a/b=1 HTTP/1.1\r\nHost: a\r\n\r\n"],
    ['absolute-form, path and query with "://"', "GET http://h/p?u=http://x/y HTTP/1.1\r\nHost: a\r\n\r\n"],
    ['absolute-form, "?" in the authority', "GET http://user?x\@h/p HTTP/1.1\r\nHost: a\r\n\r\n"],
    ['absolute-form, percent-encoded UTF-8 path and query', "GET http://h/%C3%A9?%C3%A9 HTTP/1.1\r\nHost: a\r\n\r\n"],
    ['origin-form, query with "://"', "GET /?next=http://x/y HTTP/1.1\r\nHost: a\r\n\r\n"],
    # Request lines of exactly max_line bytes for the tight limit sets (12, 20, 40): a
    # prefix ending in the line's "\r" is still incomplete, not too long
    ['request line of 12 bytes', "M / HTTP/1.1\r\nHost: a\r\n\r\n"],
    ['request line of 20 bytes', "GET /abcdef HTTP/1.1\r\nHost: a\r\n\r\n"],
    ['request line of 40 bytes', "GET /abcdefghijklmnopqrstuvwxyz HTTP/1.1\r\nHost: a\r\n\r\n"],
    # The path's UTF-8 decision: strict RFC 3629 in both
    ['UTF-8 path, U+10FFFF (the last code point)', "GET /%F4%8F%BF%BF HTTP/1.1\r\nHost: a\r\n\r\n"],
    ['UTF-8 path, U+FFFF and U+FDD0 (noncharacters)', "GET /%EF%BF%BF%EF%B7%90 HTTP/1.1\r\nHost: a\r\n\r\n"],
    ['invalid UTF-8 path (CESU-8 surrogate pair)', "GET /%ED%A0%BD%ED%B8%80 HTTP/1.1\r\nHost: a\r\n\r\n"],
    ['invalid UTF-8 path (3-byte overlong)', "GET /%E0%80%AF HTTP/1.1\r\nHost: a\r\n\r\n"],
    ['invalid UTF-8 path (4-byte overlong)', "GET /%F0%80%80%AF HTTP/1.1\r\nHost: a\r\n\r\n"],
    ['invalid UTF-8 path (F5 lead byte)', "GET /%F5%80%80%80 HTTP/1.1\r\nHost: a\r\n\r\n"],
    ["invalid UTF-8 path (perl's 5-byte extension)", "GET /%F8%88%80%80%80 HTTP/1.1\r\nHost: a\r\n\r\n"],
    ["invalid UTF-8 path (perl's 13-byte extension)", "GET /%FF%80%80%80%80%80%80%81%80%80%80%80%80 HTTP/1.1\r\nHost: a\r\n\r\n"],
    ['invalid UTF-8 path (truncated 4-byte character)', "GET /a%F0%9F%98 HTTP/1.1\r\nHost: a\r\n\r\n"],
    ['invalid UTF-8 path (lone continuation byte)', "GET /%80a HTTP/1.1\r\nHost: a\r\n\r\n"],
    ['raw UTF-8 path, 4-byte characters', "GET /\xF0\x9F\x98\x80\xF0\x9F\x98\x81 HTTP/1.1\r\nHost: a\r\n\r\n"],
    ['raw and encoded UTF-8 mixed', "GET /\xC3\xA9%C3%A9\xE2\x82\xAC HTTP/1.1\r\nHost: a\r\n\r\n"],
    ['raw UTF-8 in the query', "GET /p?q=\xE2\x82\xAC&r=%E2%82%AC HTTP/1.1\r\nHost: a\r\n\r\n"],
    # HTTP/1.x above 1.1 is read as HTTP/1.1 (RFC 9110 2.5)
    ['HTTP/1.2, read as HTTP/1.1', "POST /v HTTP/1.2\r\nHost: a\r\nContent-Length: 2\r\n\r\nok"],
    ['HTTP/1.9, bare LF, pipelined', "GET / HTTP/1.9\nHost: a\n\nGET / HTTP/1.1\r\n"],
  );
}

# Invalid requests: every error kind of the parser, each by several routes
sub bad_requests () {
  my $h = "Host: a\r\n";
  return (
    ['two spaces after the method', "GET  / HTTP/1.1\r\n$h\r\n"],
    ['trailing space after the version', "GET / HTTP/1.1 \r\n$h\r\n"],
    ['leading space', " GET / HTTP/1.1\r\n$h\r\n"],
    ['tab separator', "GET\t/ HTTP/1.1\r\n$h\r\n"],
    ['lowercase version', "GET / http/1.1\r\n$h\r\n"],
    ['version with junk', "GET / HTTP/1.1x\r\n$h\r\n"],
    ['bare CR in the request line', "GET /a\rb HTTP/1.1\r\n$h\r\n"],
    ['CR CR LF after the request line', "GET / HTTP/1.1\r\r\n$h\r\n"],
    ['DEL in the target', "GET /\x7F HTTP/1.1\r\n$h\r\n"],
    ['NUL in the target', "GET /\0 HTTP/1.1\r\n$h\r\n"],
    ['no version', "GET /\r\n$h\r\n"],
    ['authority-form', "CONNECT example.com:443 HTTP/1.1\r\n$h\r\n"],
    ['relative target', "GET index.html HTTP/1.1\r\n$h\r\n"],
    ['scheme starting with a digit', "GET 1http://a/ HTTP/1.1\r\n$h\r\n"],
    ['asterisk with more', "GET *x HTTP/1.1\r\n$h\r\n"],
    ['asterisk with a query', "OPTIONS *?x HTTP/1.1\r\n$h\r\n"],
    ['only a query', "GET ?x=1 HTTP/1.1\r\n$h\r\n"],
    ['absolute-form without "//" before the query', "GET http:?x HTTP/1.1\r\n$h\r\n"],
    ['scheme only, then a query', "GET http://?x HTTP/1.1\r\n$h\r\n"],
    ['bad method char', "G(T / HTTP/1.1\r\n$h\r\n"],
    ['HTTP/2.0', "GET / HTTP/2.0\r\n$h\r\n"],
    ['HTTP/0.9', "GET / HTTP/0.9\r\n\r\n"],
    ['HTTP/1.2 with authority-form', "CONNECT a:1 HTTP/1.2\r\n"],
    ['bad request line before an incomplete head', "GET  / HTTP/1.1\r\nHo"],
    # Raw bytes >= 0x80 in the target only as well-formed UTF-8
    ['raw 0xFF in the path', "GET /\xFF HTTP/1.1\r\n$h\r\n"],
    ['raw byte, then a percent escape', "GET /\xC3%A9 HTTP/1.1\r\n$h\r\n"],
    ['raw latin-1 in the query', "GET /?q=caf\xE9 HTTP/1.1\r\n$h\r\n"],
    ['raw surrogate in the path', "GET /\xED\xA0\x80 HTTP/1.1\r\n$h\r\n"],
    ['raw overlong in the path', "GET /\xC0\xAF HTTP/1.1\r\n$h\r\n"],
    # The first bad byte is an error at once, the line or head complete or not
    ['bad method byte, line incomplete', "G(T / HTT"],
    ['junk version, line incomplete', "GET / HTTX/1.1"],
    ['CR CR at the start', "\r\rGET / HTTP/1.1\r\n$h\r\n"],
    ['bad header, head incomplete', "GET / HTTP/1.1\r\n${h}X : y\r\nMore: 1"],
    ['bad header byte, line incomplete', "GET / HTTP/1.1\r\n${h}X: a\x01b"],
    ['HTTP/3.0', "GET / HTTP/3.0\r\n$h\r\n"],
    ['HTTP/2.0, version then junk', "GET / HTTP/2.0x\r\n$h\r\n"],
    ['HTTP/1.2 with a bad header', "GET / HTTP/1.2\r\n${h}X : y\r\n\r\n"],
    ['HTTP/1.2 without host', "GET / HTTP/1.2\r\n\r\n"],
    ['too many headers, head incomplete', "GET / HTTP/1.1\r\n$h" . join('', map "X-$_: $_\r\n", 1 .. 120)],
    ['space before the colon', "GET / HTTP/1.1\r\nHost : a\r\n\r\n"],
    ['obs-fold', "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n  folded\r\n\r\n"],
    ['no colon', "GET / HTTP/1.1\r\nHost: a\r\nJunk\r\n\r\n"],
    ['empty name', "GET / HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n"],
    ['NUL in a value', "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n"],
    ['DEL in a value', "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7Fb\r\n\r\n"],
    ['bare CR in a value', "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n"],
    ['CR CR LF after a header', "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\r\n\r\n"],
    ['control byte in a name', "GET / HTTP/1.1\r\nHost: a\r\nX\x01: a\r\n\r\n"],
    ['bad header before bad host', "GET / HTTP/1.1\r\nX : y\r\n\r\n"],
    ['missing host', "GET / HTTP/1.1\r\n\r\n"],
    ['duplicate host', "GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n"],
    ['HTTP/1.0 duplicate host', "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"],
    ['host before content-length', "GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"],
    ['content-length not a number', "POST / HTTP/1.1\r\n${h}Content-Length: 12a\r\n\r\n"],
    ['content-length negative', "POST / HTTP/1.1\r\n${h}Content-Length: -1\r\n\r\n"],
    ['content-length 19 digits', "POST / HTTP/1.1\r\n${h}Content-Length: 1000000000000000000\r\n\r\n"],
    ['content-length empty', "POST / HTTP/1.1\r\n${h}Content-Length:\r\n\r\n"],
    ['content-length trailing comma', "POST / HTTP/1.1\r\n${h}Content-Length: 5,\r\n\r\n"],
    ['content-length inner space', "POST / HTTP/1.1\r\n${h}Content-Length: 1 2\r\n\r\n"],
    ['content-length list differs', "POST / HTTP/1.1\r\n${h}Content-Length: 5, 6\r\n\r\n"],
    ['content-length fields differ', "POST / HTTP/1.1\r\n${h}Content-Length: 5\r\nContent-Length: 6\r\n\r\n"],
    ['conflict before a bad element', "POST / HTTP/1.1\r\n${h}Content-Length: 5, 6, x\r\n\r\n"],
    ['bad element before a conflict', "POST / HTTP/1.1\r\n${h}Content-Length: 5, x, 6\r\n\r\n"],
    ['content-length and transfer-encoding', "POST / HTTP/1.1\r\n${h}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"],
    ['transfer-encoding then content-length', "POST / HTTP/1.1\r\n${h}Transfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\n"],
    ['empty transfer-encoding', "POST / HTTP/1.1\r\n${h}Transfer-Encoding:\r\n\r\n"],
    ['only commas in transfer-encoding', "POST / HTTP/1.1\r\n${h}Transfer-Encoding: , ,\r\n\r\n"],
    ['gzip, chunked', "POST / HTTP/1.1\r\n${h}Transfer-Encoding: gzip, chunked\r\n\r\n"],
    ['chunked twice', "POST / HTTP/1.1\r\n${h}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"],
    ['chunked with a parameter', "POST / HTTP/1.1\r\n${h}Transfer-Encoding: chunked;q=1\r\n\r\n"],
    ['long request line', "GET /" . ('a' x 9000) . " HTTP/1.1\r\n$h\r\n"],
    ['long request line, incomplete', "GET /" . ('a' x 9000)],
    ['long request line, incomplete, final CR', "GET /" . ('a' x 9000) . "\r"],
    ['request line of max_line bytes and its CR', "GET /" . ('a' x 8178) . " HTTP/1.1\r"],
    ['request line of max_line + 1 bytes and its CR', "GET /" . ('a' x 8179) . " HTTP/1.1\r"],
    ['request line of max_line + 1 bytes, no CR', "GET /" . ('a' x 8179) . " HTTP/1.1"],
    ['huge head', "GET / HTTP/1.1\r\n$h" . ("X-Filler: " . ('f' x 100) . "\r\n") x 200 . "\r\n"],
    ['huge head, incomplete', "GET / HTTP/1.1\r\n$h" . ("X-Filler: " . ('f' x 100) . "\r\n") x 200],
    ['too many headers', "GET / HTTP/1.1\r\n$h" . join('', map "X-$_: $_\r\n", 1 .. 120) . "\r\n"],
  );
}

# (max_header_size, max_headers, max_line): the defaults, then tight ones that make
# each limit bite in the corpus
sub limit_sets () {
  return ([16384, 100, 8192], [200, 6, 40], [64, 3, 20], [30, 1, 12], [0, 0, 0], [-1, 5, -1],
    [120, 100, 8192]);
}

# Chunked bodies (what follows the head), valid and not
sub chunked_bodies () {
  return (
    ['two chunks then the next request', "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET / HTTP/1.1\r\n"],
    ['extensions', "5;name=value;x\r\nhello\r\n0;last\r\n\r\n"],
    ['whitespace after the size', "5 \t\r\nhello\r\n0\r\n\r\n"],
    ['hex sizes both cases', "A\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n"],
    ['bare LF everywhere', "5\nhello\n0\n\n"],
    ['trailers', "0\r\nX-Sum: 1\r\nY: 2\r\n\r\nrest"],
    ['leading zeros', "0005\r\nhello\r\n000\r\n\r\n"],
    ['obs-text extension', "1;\x80\xFF\t=x\r\nZ\r\n0\r\n\r\n"],
    ['15 hex digits', "fffffffffffffff\r\nabc"],
    ['empty', ''],
    ['non-hex size', "zz\r\n"],
    ['empty size line', "\r\n"],
    ['negative size', "-5\r\n"],
    ['0x prefix', "0x5\r\n"],
    ['leading space', " 5\r\n"],
    ['16 hex digits', "1000000000000000\r\n"],
    ['control byte in an extension', "5;\x01\r\nhello\r\n"],
    ['junk after the size', "5 x\r\n"],
    ['bare CR in the size line', "5\r\r\nhello"],
    ['long size line without LF', '1;' . ('e' x 5000)],
    ['long size line with LF', '1;' . ('e' x 5000) . "\r\nx\r\n0\r\n\r\n"],
    ['data not followed by CRLF', "5\r\nhelloX\r\n"],
    ['CR then junk after data', "5\r\nhello\rX"],
    ['bare CR in a trailer', "0\r\nX: a\rb\r\n\r\n"],
    ['CR CR LF in a trailer', "0\r\nX: a\r\r\n\r\n"],
    ['many trailers', "0\r\n" . ("X-T: " . ('t' x 100) . "\r\n") x 20 . "\r\n"],
    ['long trailer line without LF', "0\r\n" . ('t' x 3000)],
    # A chunk-size line is at most 4096 bytes, complete or not; a final "\r" of an
    # incomplete one does not count
    ['size line of 4096 bytes', '1;' . ('e' x 4094) . "\r\nx\r\n0\r\n\r\n"],
    ['size line of 4097 bytes', '1;' . ('e' x 4095) . "\r\nx\r\n0\r\n\r\n"],
    ['size line of 4097 bytes, bare LF', '1;' . ('e' x 4095) . "\nx\n0\n\n"],
    ['size line of 4096 bytes, incomplete, final CR', '1;' . ('e' x 4094) . "\r"],
    ['size line of 4097 bytes, incomplete', '1;' . ('e' x 4095)],
    ['size line of 4097 bytes, incomplete, final CR', '1;' . ('e' x 4095) . "\r"],
    ['second size line too long', "1\r\na\r\n2;" . ('e' x 4095) . "\r\nab\r\n0\r\n\r\n"],
    # The trailer budget counts raw bytes, terminators included, the last empty line too
    # (the decode loop tries budgets 20 and 21 on these)
    ['trailers of 20 raw bytes', "0\r\nAB: 123456\r\nC: 1\r\n\r\nnext"],
    ['trailers of 21 raw bytes', "0\r\nAB: 1234567\r\nC: 1\r\n\r\nnext"],
    ['trailers of 20 raw bytes, bare LF', "0\nAB: 1234567\nC: 123\n\nnext"],
    ['trailers of 21 raw bytes, mixed ends', "0\r\nAB: 1234567\nC: 12\r\n\r\n"],
    ['trailers, budget ends inside the empty line', "0\r\nAB: 1234567890123\r\n\r\n"],
  );
}

# serialize_response argument lists
sub responses () {
  my $wide = "\x{263A}";
  my $latin1_upgraded = "caf\xE9";
  utf8::upgrade($latin1_upgraded);
  my $body_upgraded = "b\xF6dy";
  utf8::upgrade($body_upgraded);
  return (
    ['200 with body', 200, [['Content-Type', 'text/plain']], 0, 'Hello, world!'],
    ['200 string status', '200', [], 0, ''],
    ['404 streaming (chunked)', 404, [['content-type', 'text/html']], 0, undef],
    ['HEAD with body', 200, [], 1, 'abc'],
    ['HEAD streaming', 200, [], 1, undef],
    ['HTTP/1.0 with body', 200, [], 4, 'abc'],
    ['HTTP/1.0 streaming', 200, [], 4, undef],
    ['HTTP/1.0 HEAD streaming', 200, [], 5, undef],
    ['HTTP/1.0 close', 200, [], 6, 'x'],
    ['close flag', 200, [], 2, 'x'],
    ['all flags', 200, [], 15, 'x'],
    ['upgrade: 101', 101, [['Upgrade', 'websocket'], ['Connection', 'keep-alive']], 8, undef],
    ['upgrade wins over close', 101, [['Upgrade', 'websocket'], ['Connection', 'close']], 10, undef],
    ['upgrade on HTTP/1.0', 101, [], 12, undef],
    ['flags undef', 200, [], undef, 'x'],
    ['flags as string', 200, [], '4', 'x'],
    ['204', 204, [['X', '1']], 0, 'ignored'],
    ['304 with app content-length', 304, [['Content-Length', '10']], 0, undef],
    ['100', 100, [], 0, undef],
    ['101 with connection upgrade', 101, [['Upgrade', 'websocket'], ['Connection', 'Upgrade']], 0, undef],
    ['199', 199, [], 0, ''],
    ['app content-length', 200, [['content-length', 5]], 0, 'hello'],
    ['app content-length, streaming', 200, [['Content-Length', 5]], 0, undef],
    ['app content-length, HEAD', 200, [['Content-Length', 5]], 1, undef],
    ['app transfer-encoding dropped', 200, [['Transfer-Encoding', 'gzip, chunked']], 0, undef],
    ['app connection close', 200, [['Connection', 'keep-alive, Close ']], 0, 'x'],
    ['app connection keep-alive dropped', 200, [['connection', 'keep-alive']], 4, 'x'],
    ['app connection, several fields', 200, [['Connection', 'foo'], ['CONNECTION', ' close']], 0, undef],
    ['app date and server kept', 200, [['date', 'Thu, 01 Jan 1970 00:00:00 GMT'], ['SERVER', 'mine']], 0, ''],
    ['unknown status', 599, [], 0, ''],
    ['every reason', 418, [], 0, ''],
    ['header values with tab, DEL, obs-text', 200, [['X-A', "a\tb\x7F\x80\xFF"], ['X-Empty', '']], 0, ''],
    ['undef name and value', 200, [[undef, 'v']], 0, ''],
    ['undef value', 200, [['X', undef]], 0, ''],
    ['numbers as name and value', 200, [[123, 4.5]], 0, ''],
    ['upgraded latin-1 value', 200, [['X', $latin1_upgraded]], 0, ''],
    ['upgraded body', 200, [], 0, $body_upgraded],
    ['wide body', 200, [], 0, "smile $wide"],
    ['number body', 200, [], 0, 12345],
    ['many headers', 200, [map { ["X-$_", $_] } 1 .. 50], 0, 'x'],
    ['invalid status', 'abc', [], 0, ''],
    ['status 99', 99, [], 0, ''],
    ['status 1000', 1000, [], 0, ''],
    ['status 099', '099', [], 0, ''],
    ['status with newline', "200\n", [], 0, ''],
    ['status undef', undef, [], 0, ''],
    ['status 200.0', 200.0, [], 0, ''],
    ['status 200.5', 200.5, [], 0, ''],
    ['invalid status before invalid headers', 'x', [['bad name', 'v']], 0, ''],
    ['space in a name', 200, [['X Y', 'v']], 0, ''],
    ['colon in a name', 200, [['X:', 'v']], 0, ''],
    ['empty name', 200, [['', 'v']], 0, ''],
    ['CR in a value', 200, [['X', "a\rb"]], 0, ''],
    ['LF in a value', 200, [['X', "a\nb"]], 0, ''],
    ['NUL in a value', 200, [['X', "a\0b"]], 0, ''],
    ['invalid dropped header', 200, [['Transfer-Encoding', "x\n"]], 0, ''],
    ['second header invalid', 200, [['A', '1'], ['B', "\r"]], 0, ''],
    ['wide name', 200, [["X-$wide", 'v']], 0, ''],
    ['wide value', 200, [['X', "v$wide"]], 0, ''],
    ['upgraded latin-1 name', 200, [[$latin1_upgraded, 'v']], 0, ''],
    ['invalid after many', 200, [(map { ["X-$_", $_] } 1 .. 40), ['bad name', 'v']], 0, ''],
    ['undef headers', 200, undef, 0, 'x'],
    # The app's Content-Length: 1*DIGIT, at most 18 digits, all equal; announced as $length
    ['app content-length, 18 digits', 200, [['Content-Length', '999999999999999999']], 0, undef],
    ['app content-length, leading zeros', 200, [['Content-Length', '007']], 0, 'abcdefg'],
    ['app content-length, zero', 200, [['Content-Length', '0']], 0, ''],
    ['app content-length differs from the body', 200, [['Content-Length', '10']], 0, 'abc'],
    ['app content-length, HEAD with a body', 200, [['Content-Length', '3']], 1, 'abc'],
    ['app content-length, HTTP/1.0 streaming', 200, [['Content-Length', '3']], 4, undef],
    ['app content-length, as a number', 200, [['Content-Length', 42]], 0, undef],
    ['app content-length, a float number', 200, [['Content-Length', 4.5]], 0, undef],
    ['app content-length, 1e3', 200, [['Content-Length', 1e3]], 0, undef],
    ['app content-length, upgraded digits', 200, [['Content-Length', do { my $d = '12'; utf8::upgrade($d); $d }]], 0, undef],
    ['app content-length, 19 digits', 200, [['Content-Length', '1000000000000000000']], 0, undef],
    ['app content-length, empty', 200, [['Content-Length', '']], 0, 'x'],
    ['app content-length, undef', 200, [['Content-Length', undef]], 0, 'x'],
    ['app content-length, spaces', 200, [['content-length', ' 5 ']], 0, undef],
    ['app content-length, sign', 200, [['Content-Length', '+5']], 0, undef],
    ['app content-length, negative', 200, [['Content-Length', '-1']], 0, undef],
    ['app content-length, hex', 200, [['Content-Length', '0x5']], 0, undef],
    ['app content-length, a list', 200, [['Content-Length', '5, 5']], 0, undef],
    ['app content-length, obs-text', 200, [['Content-Length', "5\xB2"]], 0, undef],
    ['app content-length, Arabic-Indic digit (wide)', 200, [['Content-Length', "\x{663}"]], 0, undef],
    ['app content-length, LF (a bad value first)', 200, [['Content-Length', "5\n"]], 0, undef],
    ['app content-lengths agree', 200, [['content-length', '5'], ['X', 'y'], ['CONTENT-LENGTH', '05']], 0, 'hello'],
    ['app content-lengths conflict', 200, [['content-length', '5'], ['Content-Length', '6']], 0, 'hello'],
    ['app content-length: conflict before a bad one', 200, [['content-length', '5'], ['Content-Length', '6'], ['Content-Length', 'x']], 0, undef],
    ['app content-length: bad one before a conflict', 200, [['content-length', '5'], ['Content-Length', 'x'], ['Content-Length', '6']], 0, undef],
    ['app content-length: bad name after it', 200, [['content-length', 'x'], ['bad name', '1']], 0, undef],
    ['app content-length: bad name before it', 200, [['bad name', '1'], ['content-length', 'x']], 0, undef],
    ['app content-length, bad, on a 204', 204, [['Content-Length', 'x']], 0, undef],
    ['app content-length, bad, invalid status', 'x', [['Content-Length', 'x']], 0, undef],
    ['transfer-encoding value is not a length', 200, [['Transfer-Encoding', 'x'], ['Content-Length', '1']], 0, 'a'],
    ['content-length-ish names are not lengths', 200, [['Content-Lengths', 'x'], ['Content-Lengt', 'y']], 0, 'a'],
    ['app content-length after 40 headers', 200, [(map { ["X-$_", $_] } 1 .. 40), ['Content-Length', 'z']], 0, ''],
    # HEAD over HTTP/1.0 without a length: nothing follows, no forced close
    ['HTTP/1.0 HEAD streaming, close flag', 200, [], 7, undef],
    ['HTTP/1.0 HEAD streaming, app close', 200, [['Connection', 'close']], 5, undef],
    ['HTTP/1.0 HEAD with a body', 200, [], 5, 'abc'],
    # A body with a character above 0xFF is API misuse, before anything else
    ['wide body, invalid status', 'x', [], 0, "\x{100}"],
    ['wide body, invalid header', 200, [['bad name', 'v']], 0, "\x{100}"],
    ['wide body, 204', 204, [], 0, "\x{2603}"],
    ['wide body, HEAD', 200, [], 1, "\x{2603}"],
    ['upgraded latin-1 body, HEAD', 200, [], 1, $body_upgraded],
  );
}

# serialize_chunk inputs
sub chunk_datas () {
  my $up = "\xE9t\xE9";
  utf8::upgrade($up);
  return (
    ['empty', ''], ['undef', undef], ['one byte', 'x'], ['15 bytes', 'x' x 15], ['16 bytes', 'y' x 16],
    ['4096 bytes', 'z' x 4096], ['binary', join('', map chr, 0 .. 255)], ['zero', '0'], ['number', 42],
    ['upgraded latin-1', $up], ['wide', "\x{263A}\x{263B}"], ['wide after latin-1', "\xE9\x{100}"],
    ['upgraded empty', do { my $e = ''; utf8::upgrade($e); $e }],
  );
}

# serialize_trailers inputs
sub trailer_sets () {
  return (
    ['none', []], ['undef', undef], ['one', [['X-Checksum', 'abc123']]],
    ['two, names as given', [['x-a', '1'], ['X-B', '']]],
    ['transfer-encoding is not dropped', [['Transfer-Encoding', 'x']]],
    ['invalid name', [['bad name', 'x']]], ['invalid value', [['X', "a\r\nb"]]],
    ['wide value', [['X', "\x{100}"]]], ['undef name', [[undef, 'x']]],
  );
}

# A deterministic random edit of $bytes (Perl's drand48 after srand: the same on every
# platform for a given seed)
my @SPECIAL = ("\r", "\n", "\r\n", ' ', "\t", ':', ',', ';', '%', '?', '/', '0', 'a', 'F', "\0",
  "\x7F", "\x80", "\xC3", "\xFF", 'HTTP/1.1', "\r\n\r\n", 'chunked', 'close', "Host: a\r\n");

sub mutate ($bytes) {
  my $edits = 1 + int rand 3;
  for (1 .. $edits) {
    my $len = length $bytes;
    my $pos = int rand($len + 1);
    my $op = int rand 7;
    if ($op == 0 && $len) {    # flip one byte to any value
      substr($bytes, $pos % $len, 1, chr int rand 256);
    }
    elsif ($op == 1) {         # insert a special token
      substr($bytes, $pos, 0, $SPECIAL[rand @SPECIAL]);
    }
    elsif ($op == 2 && $len) { # delete a few bytes
      substr($bytes, $pos % $len, 1 + int rand 4, '');
    }
    elsif ($op == 3) {         # truncate
      $bytes = substr($bytes, 0, $pos);
    }
    elsif ($op == 4 && $len) { # replace a byte by a special token
      substr($bytes, $pos % $len, 1, $SPECIAL[rand @SPECIAL]);
    }
    elsif ($op == 5 && $len) { # duplicate a slice
      my $from = int rand $len;
      substr($bytes, $pos, 0, substr($bytes, $from, 1 + int rand 16));
    }
    else {                     # flip case of one byte
      substr($bytes, $pos % $len, 1) =~ tr/a-zA-Z/A-Za-z/ if $len;
    }
  }
  return $bytes;
}

# A canonical text of a result: undef, numbers and strings are told apart from each other
# only as Perl's `eq` would (like is_deeply), but a string's UTF-8 flag is shown when
# $flags is true (the path's character semantics are part of the contract)
sub canon ($x, $flags = 1) {
  return 'undef' unless defined $x;
  if (ref $x eq 'ARRAY') { return '[' . join(', ', map { canon($_, $flags) } @$x) . ']' }
  if (ref $x eq 'HASH') {
    return '{' . join(', ', map { "$_ => " . canon($x->{$_}, $flags) } sort keys %$x) . '}';
  }
  my $s = "$x";
  my $tag = $flags && utf8::is_utf8($s) && $s =~ /[^\x00-\x7F]/ ? 'u' : '';
  return $tag . '"' . ($s =~ s/([^\x20-\x7E]|["\\])/sprintf(ord($1) > 255 ? '\\x{%x}' : '\\x%02x', ord $1)/ger) . '"';
}

# The Date value varies with time: replace it (after checking its shape)
sub strip_date ($bytes) {
  return $bytes unless defined $bytes;
  $bytes =~ s/\r\nDate: (?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT\r\n/\r\nDate: (now)\r\n/;
  return $bytes;
}

1;
