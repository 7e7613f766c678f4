use strict;
use warnings;
use experimental 'signatures';
use Test::More;
no warnings 'portable';    # 15-digit hex chunk sizes
use IO::Socket::IP;
use Socket qw(AF_UNIX SOCK_STREAM PF_UNSPEC);
use Time::Local qw(timegm);
use PAGI::Server::Protocol::HTTP1;

# The codec through its facade, against doc/codec.md: every result field, every error
# kind and message, the limits and their order. No sockets except for connection_info.
# Runs against whichever backend is active (PAGI_SERVER_BACKEND).

my $B = PAGI::Server::Protocol::HTTP1::backend();
note("backend $B");

sub pr ($buf, $mhs = 16384, $mh = 100, $ml = 8192) {
  return [PAGI::Server::Protocol::HTTP1::parse_request($buf, $mhs, $mh, $ml)];
}
sub dc ($buf, $state = -1, $max = 16384) {
  return [PAGI::Server::Protocol::HTTP1::decode_chunked($buf, $state, $max)];
}
sub sr (@args) { [PAGI::Server::Protocol::HTTP1::serialize_response(@args)] }

my %MSG = (
  bad_request_line              => 'invalid request line',
  bad_header                    => 'invalid header field',
  bad_host                      => 'missing or duplicate host header',
  bad_content_length            => 'invalid content-length',
  conflicting_length            => 'conflicting message length',
  bad_transfer_encoding         => 'invalid transfer-encoding',
  bad_chunk                     => 'invalid chunked encoding',
  uri_too_long                  => 'request line too long',
  headers_too_large             => 'request header fields too large',
  unsupported_transfer_encoding => 'unsupported transfer-encoding',
  unsupported_version           => 'http version not supported',
);
my %SEEN_KIND;

# A parse error: ({error, message}, 0)
sub parse_error_is ($buf, $kind, $name, @limits) {
  $SEEN_KIND{$kind}++;
  is_deeply(pr($buf, @limits), [{error => $kind, message => $MSG{$kind}}, 0], "$name -> $kind");
}

sub req (@header_lines) { join('', "GET / HTTP/1.1\r\n", map("$_\r\n", @header_lines), "\r\n") }

subtest 'parse_request: a complete request, every result field' => sub {
  my $head = "GET /a/b%20c?x=1&y=%20 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t/1\r\n"
    . "Accept: */*\r\n\r\n";
  is_deeply(pr($head . "NEXT"), [{
    method => 'GET', path => '/a/b c', raw_path => '/a/b%20c', query_string => 'x=1&y=%20',
    http_version => '1.1',
    headers => [['host', 'example.com'], ['user-agent', 't/1'], ['accept', '*/*']],
  }, length $head], 'a keep-alive GET: exactly the six scope keys; consumed stops at the end of the head');
  my $post = "POST /up HTTP/1.0\r\nContent-Length: 12\r\nConnection: keep-alive\r\n"
    . "Expect: 100-continue\r\nAccept: text/event-stream\r\n\r\n";
  is_deeply(pr($post . 'hello world!'), [{
    method => 'POST', path => '/up', raw_path => '/up', query_string => '', http_version => '1.0',
    headers => [['content-length', '12'], ['connection', 'keep-alive'], ['expect', '100-continue'],
      ['accept', 'text/event-stream']],
    content_length => 12, sse => 1,
  }, length $post], 'HTTP/1.0 keep-alive POST without Host: its facts set, no close key, Expect ignored');
  my $ws = req('Host: h', 'Connection: keep-alive, Upgrade', 'Upgrade: WebSocket ',
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ== ', 'Sec-WebSocket-Version: 13');
  my ($r) = @{pr($ws)};
  is($r->{upgrade}, 'websocket', 'upgrade: lowercased, trimmed, with Connection: upgrade');
  is($r->{ws_key}, 'dGhlIHNhbXBsZSBub25jZQ==', 'ws_key trimmed');
  is($r->{ws_version}, '13', 'ws_version');
  ok(!exists $r->{close}, 'keep-alive token with upgrade: no close');
  ok(!ref $r->{content_length} && !defined $r->{content_length}, 'content_length undef when absent');
};

subtest 'parse_request: incomplete input needs more bytes, at every split point' => sub {
  my $full = "POST /p?q HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nX-Long: " . ('v' x 50) . "\r\n\r\n";
  my $bad = 0;
  for my $i (0 .. length($full) - 1) {
    my $got = pr(substr($full, 0, $i));
    $bad++, diag("prefix $i: " . explain($got)) unless !defined $got->[0] && $got->[1] == 0;
  }
  is($bad, 0, 'every proper prefix returns (undef, 0)');
  is(pr($full)->[1], length $full, 'the whole head parses');
  is_deeply(pr(''), [undef, 0], 'empty buffer');
  is_deeply(pr("\r\n\r\n"), [undef, 0], 'only empty lines');
};

subtest 'parse_request: line endings and leading empty lines' => sub {
  my $lf = "GET / HTTP/1.1\nHost: a\nX: y\n\n";
  my ($r, $n) = @{pr($lf)};
  is($n, length $lf, 'bare LF line ends are accepted');
  is_deeply($r->{headers}, [['host', 'a'], ['x', 'y']], '... and headers parsed');
  my $lead = "\r\n\n\r\n";
  ($r, $n) = @{pr($lead . req('Host: a'))};
  is($n, length($lead) + length(req('Host: a')), 'leading empty lines are skipped and counted in consumed');
  is($r->{method}, 'GET', '... and the request parsed');
  parse_error_is("GET / HTTP/1.1\r\r\nHost: a\r\n\r\n", 'bad_request_line', 'bare CR in the request line');
  parse_error_is("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", 'bad_header', 'bare CR in a header value');
  parse_error_is("GET / HTTP/1.1\r\nHost: a\r\nX\r: b\r\n\r\n", 'bad_header', 'bare CR in a header name');
};

subtest 'parse_request: request line forms' => sub {
  my ($r) = @{pr("get /x HTTP/1.1\r\nHost: a\r\n\r\n")};
  is($r->{method}, 'get', 'method case is kept');
  ($r) = @{pr("M-SEARCH * HTTP/1.1\r\nHost: a\r\n\r\n")};
  is($r->{method}, 'M-SEARCH', 'method with tchar punctuation');
  is($r->{raw_path}, '*', 'asterisk-form raw_path');
  is($r->{path}, '*', 'asterisk-form path');
  ($r) = @{pr("GET http://example.com:8080/p/q?a=1 HTTP/1.1\r\nHost: example.com\r\n\r\n")};
  is($r->{raw_path}, '/p/q', 'absolute-form: raw_path from the first / after the authority');
  is($r->{query_string}, 'a=1', 'absolute-form: query string');
  ($r) = @{pr("GET https://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n")};
  is($r->{raw_path}, '/', 'absolute-form without a path: /');
  ($r) = @{pr("GET /p? HTTP/1.1\r\nHost: a\r\n\r\n")};
  is_deeply([$r->{raw_path}, $r->{query_string}], ['/p', ''], 'empty query after ?');
  ($r) = @{pr("GET /p?a?b=%41 HTTP/1.1\r\nHost: a\r\n\r\n")};
  is_deeply([$r->{raw_path}, $r->{query_string}], ['/p', 'a?b=%41'],
    'query is everything after the first ?, still encoded');
  ($r) = @{pr("GET /p#frag HTTP/1.1\r\nHost: a\r\n\r\n")};
  is($r->{raw_path}, '/p#frag', 'a fragment is not special');
  for my $bad ("GET /\r\n", "GET  / HTTP/1.1\r\n", "GET /  HTTP/1.1\r\n", "GET / HTTP/1.1 \r\n",
    " GET / HTTP/1.1\r\n", "G(T / HTTP/1.1\r\n", "GET /a\x7fb HTTP/1.1\r\n", "GET /a\0 HTTP/1.1\r\n",
    "GET / http/1.1\r\n", "GET / HTTP/11\r\n", "GET / HTTP/1.1x\r\n", "GET / HTTP/1.10\r\n",
    "GET foo HTTP/1.1\r\n", "GET ://x/ HTTP/1.1\r\n", "GET 1http://x/ HTTP/1.1\r\n",
    "GET\t/ HTTP/1.1\r\n", "GET / HTTP/1.1\r\n" =~ s/ HTTP/\tHTTP/r, "/ HTTP/1.1\r\n") {
    parse_error_is($bad . "Host: a\r\n\r\n", 'bad_request_line', 'request line ' . explain_bytes($bad));
  }
  for my $v ('HTTP/2.0', 'HTTP/0.9', 'HTTP/3.0') {
    parse_error_is("GET / $v\r\nHost: a\r\n\r\n", 'unsupported_version', "version $v");
  }
  parse_error_is("GET / HTTP/2.0\r\nHost: a", 'unsupported_version',
    'the request line is validated as soon as it is complete, before the head');
  is_deeply(pr("GET / HTTP/2.0"), [undef, 0], 'another major version waits for its line end');
  parse_error_is("GET / HTTP/2.0x", 'bad_request_line', '... which must follow it');
  parse_error_is("FOO\r\n", 'bad_request_line', 'a complete garbage line fails at once');
  parse_error_is("G(T", 'bad_request_line', 'so does a bad byte before the line is complete');
  parse_error_is("GET /\xE9 HTTP/1.1\r\nHost: a\r\n\r\n", 'bad_request_line',
    'a raw byte >= 0x80 that is not well-formed UTF-8 in the target');
  # HTTP/1.x above 1.1 is read as HTTP/1.1 (RFC 9110 2.5)
  ($r) = @{pr("GET / HTTP/1.2\r\nHost: a\r\n\r\n")};
  is($r->{http_version}, '1.1', 'HTTP/1.2 is served as HTTP/1.1');
  ok(!$r->{close}, '... with its keep-alive default');
};

sub explain_bytes ($s) { $s =~ s/([^\x21-\x7e])/sprintf '\\x%02x', ord $1/ger }

subtest 'parse_request: path decoding' => sub {
  my sub path_of ($target) { pr("GET $target HTTP/1.1\r\nHost: a\r\n\r\n")->[0] }
  my $r = path_of('/a%20b%2Fc%2fd');
  is($r->{path}, '/a b/c/d', '%XX decoded, either case');
  is($r->{raw_path}, '/a%20b%2Fc%2fd', 'raw_path keeps the encoding');
  ok(!utf8::is_utf8($r->{path}), 'ASCII path has no UTF-8 flag');
  is(path_of('/%zz%4/%%41%')->{path}, '/%zz%4/%A%', 'a % without two hex digits stays literal');
  $r = path_of('/caf%C3%A9/%E2%98%BA');
  is($r->{path}, "/caf\x{e9}/\x{263a}", 'valid UTF-8 is decoded to characters');
  ok(utf8::is_utf8($r->{path}), '... with the UTF-8 flag');
  is($r->{raw_path}, '/caf%C3%A9/%E2%98%BA', 'raw_path is the encoded bytes');
  $r = path_of("/caf\xc3\xa9");
  is($r->{path}, "/caf\x{e9}", 'raw UTF-8 bytes in the target are decoded too');
  is($r->{raw_path}, "/caf\xc3\xa9", '... raw_path keeps them as bytes');
  ok(!utf8::is_utf8($r->{raw_path}), '... without the flag');
  for my $case (['%FF%FE', "\xff\xfe", 'invalid bytes'], ['%C0%AF', "\xc0\xaf", 'an overlong form'],
    ['%ED%A0%80', "\xed\xa0\x80", 'a surrogate'], ['%F4%90%80%80', "\xf4\x90\x80\x80", 'above U+10FFFF'],
    ['caf%C3', "caf\xc3", 'a truncated sequence'], ['%C3%A9%FF', "\xc3\xa9\xff", 'valid then invalid']) {
    my ($enc, $bytes, $what) = @$case;
    $r = path_of("/$enc");
    is($r->{path}, "/$bytes", "invalid UTF-8 ($what) is kept as bytes");
    ok(!utf8::is_utf8($r->{path}), '... without the UTF-8 flag (no U+FFFD)');
  }
};

subtest 'parse_request: headers' => sub {
  my ($r) = @{pr(req('Host: a', "X-Trim: \t  v a l \t ", 'X-Empty:', 'X-NoSpace:v', 'X-Dup: 1',
    'x-dup: 2', "X-High: caf\xc3\xa9\x80\xff", "X-Tab: a\tb", 'X-Colon: a: b'))};
  is_deeply($r->{headers}, [['host', 'a'], ['x-trim', 'v a l'], ['x-empty', ''], ['x-nospace', 'v'],
    ['x-dup', '1'], ['x-dup', '2'], ['x-high', "caf\xc3\xa9\x80\xff"], ['x-tab', "a\tb"],
    ['x-colon', 'a: b']],
    'names lowercased, order and duplicates kept, OWS trimmed, opaque bytes kept');
  ($r) = @{pr(req('Cookie: a=1', 'Host: a', 'X: y', 'cookie: b=2', 'COOKIE: c=3; d=4'))};
  is_deeply($r->{headers}, [['cookie', 'a=1; b=2; c=3; d=4'], ['host', 'a'], ['x', 'y']],
    'Cookie fields merged with "; " at the position of the first');
  for my $bad ('Host : a', ': a', ' X: a', "\tX: a", 'X', 'X(Y: a', "X: a\0b", "X: a\x7fb",
    "X: a\x01b", "X: a\x1bb", "X\x80: a") {
    parse_error_is(req('Host: a', $bad), 'bad_header', 'header line ' . explain_bytes($bad));
  }
  parse_error_is(req('Host: a', 'X: a', ' folded'), 'bad_header', 'obs-fold continuation line');
  parse_error_is(req('X: ok', "Y: \0", 'Z Z: bad'), 'bad_header', 'the first bad line wins, before the host check');
};

subtest 'parse_request: connection, expect, accept' => sub {
  my sub flag ($version, $key, @lines) {
    pr("GET / HTTP/$version\r\n" . join('', map "$_\r\n", 'Host: a', @lines) . "\r\n")->[0]{$key};
  }
  is(flag('1.1', 'close'), undef, 'HTTP/1.1 keeps alive by default');
  is(flag('1.0', 'close'), 1, 'HTTP/1.0 closes by default');
  is(flag('1.0', 'close', 'Connection: Keep-Alive'), undef, 'HTTP/1.0 keep-alive token, any case');
  is(flag('1.1', 'close', 'Connection: close'), 1, 'close');
  is(flag('1.1', 'close', 'Connection: foo, CLOSE '), 1, 'close in a token list, any case');
  is(flag('1.0', 'close', 'Connection: keep-alive', 'Connection: close'), 1, 'close wins over keep-alive');
  is(flag('1.1', 'close', 'Connection: closed'), undef, '"closed" is not close');
  is(flag('1.1', 'upgrade', 'Upgrade: websocket'), undef, 'upgrade needs a Connection: upgrade token');
  is(flag('1.1', 'upgrade', 'Connection: UPGRADE', 'Upgrade: h2c', 'Upgrade: WebSocket'), 'websocket',
    'upgrade is the last Upgrade field');
  is(flag('1.1', 'ws_key', 'Sec-WebSocket-Key: a', 'Sec-WebSocket-Key: b'), 'b', 'ws_key: the last field');
  is(flag('1.1', 'expect_continue', 'Expect: 100-Continue'), 1, 'Expect: 100-continue, any case');
  is(flag('1.1', 'expect_continue', 'Expect:  100-continue  '), 1, '... trimmed');
  is(flag('1.1', 'expect_continue', 'Expect: 100-continue-please'), undef, 'other expectations are not');
  is(flag('1.0', 'expect_continue', 'Expect: 100-continue'), undef, 'HTTP/1.0: ignored (RFC 9110 10.1.1)');
  is(flag('1.1', 'sse', 'Accept: text/html, TEXT/Event-Stream;q=1'), 1, 'sse: text/event-stream anywhere in Accept');
  is(flag('1.1', 'sse', 'Accept: text/html', 'Accept: text/event-stream'), 1, 'sse: in any Accept field');
  is(flag('1.1', 'sse', 'X-Accept: text/event-stream'), undef, 'sse: only Accept counts');
  is(flag('1.0', 'host'), undef, 'the host value is only in headers');
  parse_error_is("GET / HTTP/1.1\r\n\r\n", 'bad_host', 'HTTP/1.1 without Host');
  parse_error_is(req('Host: a', 'Host: b'), 'bad_host', 'HTTP/1.1 with two Host fields');
  parse_error_is("GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", 'bad_host', 'HTTP/1.0 with two Host fields');
};

subtest 'parse_request: message length' => sub {
  my sub len (@lines) { my ($r) = @{pr(req('Host: a', @lines))}; [$r->{content_length}, $r->{chunked} // 0] }
  is_deeply(len('Content-Length: 5'), [5, 0], 'Content-Length');
  is_deeply(len('Content-Length: 0'), [0, 0], 'Content-Length: 0 is defined');
  is_deeply(len('Content-Length:  7 , 7'), [7, 0], 'a list of equal values, trimmed');
  is_deeply(len('Content-Length: 7', 'content-length: 007'), [7, 0], 'equal values in two fields (as numbers)');
  is_deeply(len('Content-Length: 999999999999999999'), [999999999999999999, 0], '18 digits');
  is_deeply(len('Transfer-Encoding: chunked'), [undef, 1], 'chunked');
  is_deeply(len('Transfer-Encoding: CHUNKED , '), [undef, 1], 'chunked: case, empty elements ignored');
  is_deeply(len('Transfer-Encoding: ,', 'Transfer-Encoding: chunked'), [undef, 1], 'chunked over two fields');
  my $h = sub (@l) { req('Host: a', @l) };
  parse_error_is($h->('Content-Length: abc'), 'bad_content_length', 'Content-Length: abc');
  parse_error_is($h->('Content-Length: -1'), 'bad_content_length', 'Content-Length: -1');
  parse_error_is($h->('Content-Length: +5'), 'bad_content_length', 'Content-Length: +5');
  parse_error_is($h->('Content-Length: 5 5'), 'bad_content_length', 'Content-Length: 5 5');
  parse_error_is($h->('Content-Length:'), 'bad_content_length', 'empty Content-Length');
  parse_error_is($h->('Content-Length: 5,'), 'bad_content_length', 'Content-Length with an empty element');
  parse_error_is($h->('Content-Length: 1234567890123456789'), 'bad_content_length', '19 digits');
  parse_error_is($h->('Content-Length: 0x10'), 'bad_content_length', 'hex Content-Length');
  parse_error_is($h->('Content-Length: 5, 6'), 'conflicting_length', 'conflicting values in one field');
  parse_error_is($h->('Content-Length: 5', 'Content-Length: 6'), 'conflicting_length', 'conflicting fields');
  parse_error_is($h->('Content-Length: 5', 'Transfer-Encoding: chunked'), 'conflicting_length',
    'Content-Length and Transfer-Encoding');
  parse_error_is($h->('Transfer-Encoding: gzip', 'Content-Length: 5'), 'conflicting_length',
    'Transfer-Encoding (even unsupported) and Content-Length');
  parse_error_is($h->('Content-Length: x', 'Transfer-Encoding: chunked'), 'bad_content_length',
    "Content-Length's own check comes before the conflict");
  parse_error_is($h->('Transfer-Encoding: gzip'), 'unsupported_transfer_encoding', 'Transfer-Encoding: gzip');
  parse_error_is($h->('Transfer-Encoding: gzip, chunked'), 'unsupported_transfer_encoding', 'gzip, chunked');
  parse_error_is($h->('Transfer-Encoding: chunked', 'Transfer-Encoding: chunked'),
    'unsupported_transfer_encoding', 'chunked twice');
  parse_error_is($h->('Transfer-Encoding:'), 'bad_transfer_encoding', 'empty Transfer-Encoding');
  parse_error_is($h->('Transfer-Encoding: , ,'), 'bad_transfer_encoding', 'Transfer-Encoding of empty elements');
  parse_error_is("GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n", 'bad_host', 'the host check comes before length');
};

subtest 'parse_request: limits and their order' => sub {
  my $line = 'GET /' . ('a' x 15) . " HTTP/1.1";    # 29 bytes
  is(length $line, 29, 'test line length');
  ok(!exists pr("$line\r\nHost: a\r\n\r\n", 1000, 10, 29)->[0]{error}, 'request line of exactly max_line');
  parse_error_is("$line\r\nHost: a\r\n\r\n", 'uri_too_long', 'request line of max_line + 1', 1000, 10, 28);
  parse_error_is("$line\r\nHost: a", 'uri_too_long', 'a long complete line with an incomplete head', 1000, 10, 28);
  parse_error_is('GET /' . ('a' x 30), 'uri_too_long', 'no line end yet, more than max_line bytes', 1000, 10, 28);
  is_deeply(pr('GET /' . ('a' x 23), 1000, 10, 28), [undef, 0], 'no line end yet, max_line bytes: wait');
  parse_error_is('GET /' . ('a' x 60), 'headers_too_large', 'no line end, within max_line but over max_header_size',
    50, 10, 100);
  parse_error_is("\r\n" x 10 . 'GET /' . ('a' x 30), 'uri_too_long',
    'skipped empty lines do not count, the rest does', 1000, 10, 28);
  is_deeply(pr("\r\n" x 10 . 'GET /' . ('a' x 20), 1000, 10, 28), [undef, 0],
    '... a short rest after many empty lines waits');
  my $head = "GET / HTTP/1.1\r\nHost: a\r\nX: " . ('v' x 20) . "\r\n\r\n";
  my $size = length $head;
  ok(!exists pr($head, $size, 10, 100)->[0]{error}, 'head of exactly max_header_size');
  ok(!exists pr("\r\n\r\n$head", $size, 10, 100)->[0]{error}, '... leading empty lines are not counted');
  parse_error_is($head, 'headers_too_large', 'head of max_header_size + 1', $size - 1, 10, 100);
  parse_error_is(substr($head, 0, -2) . ('x' x 30), 'headers_too_large',
    'an incomplete head over max_header_size', $size, 10, 100);
  is_deeply(pr(substr($head, 0, -2), $size, 10, 100), [undef, 0], 'an incomplete head within the limit waits');
  my $three = req('Host: a', 'X: 1', 'X: 2');
  ok(!exists pr($three, 1000, 3, 100)->[0]{error}, 'exactly max_headers header lines');
  parse_error_is($three, 'headers_too_large', 'max_headers + 1 header lines', 1000, 2, 100);
  parse_error_is(req('Host: a', 'Cookie: a', 'Cookie: b'), 'headers_too_large',
    'merged Cookie lines still count as lines', 1000, 2, 100);
  parse_error_is(req('Host: a', "X: \0", 'Y: 1'), 'headers_too_large',
    'too many headers is found before a bad header', 1000, 2, 100);
  parse_error_is("GET / HTTP/1.1\r\n" . ("X: 1\r\n" x 200) . "\r\n", 'headers_too_large', 'default limits: 200 headers');
};

subtest 'parse_request: random input never dies' => sub {
  srand(20260101);
  my @atoms = ("GET", " ", "/", "HTTP/1.1", "HTTP/1.0", "\r\n", "\n", "\r", ":", "Host", "a", "%",
    "Content-Length", "Transfer-Encoding", "chunked", ",", "\0", "\xff", "\t", "?", "1", "Cookie");
  my ($died, $bad) = (0, 0);
  for (1 .. 3000) {
    my $buf = join '', map { $atoms[rand @atoms] } 1 .. 1 + int rand 30;
    my @r = eval { PAGI::Server::Protocol::HTTP1::parse_request($buf, 64, 5, 32) };
    if ($@) { $died++; diag("died on " . explain_bytes($buf) . ": $@") if $died < 5; next }
    my ($res, $n) = @r;
    $bad++ unless @r == 2 && (!defined $res && $n == 0 || ref $res eq 'HASH'
      && (exists $res->{error} ? $n == 0 && $MSG{$res->{error}} eq $res->{message} : $n > 0 && $n <= length $buf));
  }
  is($died, 0, 'no input makes parse_request die');
  is($bad, 0, 'every result follows the three-way contract');
};

subtest 'decode_chunked' => sub {
  my $two = "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
  is_deeply(dc("${two}GET /"), ['hello world', length $two, -4],
    'two chunks and the end; the next request is not consumed');
  my $ext = "5;name=val;x\r\nhello\r\n0 ; e=\"q\"\r\n\r\n";
  is_deeply(dc($ext), ['hello', length $ext, -4], 'chunk extensions');
  is_deeply(dc("5 \t\r\nhello\r\n0\r\n\r\n"), ['hello', 17, -4], 'whitespace after the size');
  is_deeply(dc("A\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n"), ['0123456789' x 2, 35, -4],
    'hex sizes in either case');
  is_deeply(dc("5\nhello\n0\n\n"), ['hello', 11, -4], 'bare LF line ends');
  is_deeply(dc("0\r\nX-Sum: 1\r\nY: 2\r\n\r\nrest"), ['', 21, -4], 'trailers are consumed and discarded');
  is_deeply(dc("5\r\nhel"), ['hel', 6, 2], 'part of a chunk: state is the bytes left');
  is_deeply(dc('lo', 2), ['lo', 2, -2], 'the rest of the chunk: expect CRLF');
  is_deeply(dc("\r", -2), ['', 0, -2], 'a lone CR after the data waits');
  is_deeply(dc("\r\n", -2), ['', 2, -1], 'CRLF after the data: expect a size line');
  is_deeply(dc("\n", -2), ['', 1, -1], 'bare LF after the data');
  is_deeply(dc("0\r\n"), ['', 3, -3], 'last chunk: trailer section');
  is_deeply(dc("X: 1\r\n", -3), ['', 6, -3], 'a trailer line');
  is_deeply(dc("\r\n", -3), ['', 2, -4], 'the end of the trailers');
  is_deeply(dc("anything", -4), ['', 0, -4], 'finished: nothing more is consumed');
  is_deeply(dc("5\r\nhello"), ['hello', 8, -2], 'data without its CRLF yet');
  is_deeply(dc("5"), ['', 0, -1], 'an incomplete size line waits');
  is_deeply(dc(('0' x 4000)), ['', 0, -1], 'a long incomplete size line (under 4096) waits');
  is_deeply(dc("fffffffffffffff\r\n"), ['', 17, 0xfffffffffffffff], '15 hex digits');

  my $body = "7\r\nchunked\r\n1;x=1\r\n \r\n4\r\nbody\r\n0\r\nT: v\r\n\r\n";
  my $bad = 0;
  for my $cut (1 .. length($body) - 1) {
    my ($state, $data, $buf) = (-1, '', '');
    for my $piece (substr($body, 0, $cut), substr($body, $cut)) {
      $buf .= $piece;
      my ($d, $n, $s) = PAGI::Server::Protocol::HTTP1::decode_chunked($buf, $state, 16384);
      if (ref $d) { $bad++; diag("cut $cut: $d->{error}"); last }
      $data .= $d;
      substr($buf, 0, $n, '');
      $state = $s;
    }
    $bad++, diag("cut $cut: got '$data' state $state") unless $data eq 'chunked body' && $state == -4 && $buf eq '';
  }
  is($bad, 0, 'split at every point, fed in two pieces: same data, state -4');

  my sub chunk_error ($buf, $name, $state = -1, $kind = 'bad_chunk', $max = 16384) {
    $SEEN_KIND{$kind}++;
    is_deeply(dc($buf, $state, $max), [{error => $kind, message => $MSG{$kind}}, 0, $state], "$name -> $kind");
  }
  chunk_error("zz\r\n", 'non-hex size');
  chunk_error("\r\n", 'empty size line');
  chunk_error("-5\r\n", 'negative size');
  chunk_error("0x5\r\n", '0x prefix');
  chunk_error(" 5\r\n", 'leading space');
  chunk_error("1000000000000000\r\n", '16 hex digits');
  chunk_error("5;\x01\r\n", 'control byte in a chunk extension');
  chunk_error("5 x\r\n", 'junk after the size');
  chunk_error("5\r\r\n", 'bare CR in the size line');
  chunk_error('1' x 5000, 'a size line over 4096 bytes without LF');
  chunk_error("helloX", 'data not followed by CRLF', 2) if 0;
  is_deeply(dc("5\r\nhelloX")->[0], {error => 'bad_chunk', message => $MSG{bad_chunk}},
    'data not followed by CRLF -> bad_chunk');
  chunk_error("X", 'a byte other than CR/LF after the data', -2);
  chunk_error("\rX", 'CR then not LF after the data', -2);
  chunk_error("X: a\rb\r\n\r\n", 'bare CR in a trailer line', -3);
  chunk_error("0\r\n" . ("X-T: " . ('t' x 100) . "\r\n") x 20 . "\r\n", 'trailers over max_trailer_size',
    -1, 'headers_too_large', 1000) if 0;
  is_deeply(dc("0\r\n" . ("X-T: " . ('t' x 100) . "\r\n") x 20 . "\r\n", -1, 1000)->[0],
    {error => 'headers_too_large', message => $MSG{headers_too_large}},
    'trailers over max_trailer_size (20 lines of 107 bytes, limit 1000) -> headers_too_large');
  is(dc("0\r\n" . ("X-T: " . ('t' x 100) . "\r\n") x 5 . "\r\n", -1, 1000)->[2], -4,
    '... 5 such lines fit in 1000');
  chunk_error('t' x 2000, 'an incomplete trailer line over max_trailer_size', -3, 'headers_too_large', 1000);
};

# Replaces the Date line by a fixed one after checking it (IMF-fixdate, now)
sub undate ($bytes) {
  my $ok = $bytes =~ s/\r\nDate: ((?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), ([0-9]{2}) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) ([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) GMT)\r\n/\r\nDate: X\r\n/;
  return "NO VALID DATE LINE: $bytes" unless $ok;
  my %m = (Jan => 0, Feb => 1, Mar => 2, Apr => 3, May => 4, Jun => 5, Jul => 6, Aug => 7, Sep => 8,
    Oct => 9, Nov => 10, Dec => 11);
  my $t = timegm($7, $6, $5, $2, $m{$3}, $4);
  return "DATE NOT NOW ($1): $bytes" if abs($t - time) > 2;
  return $bytes;
}

subtest "serialize_response and check_headers: the app's Content-Length" => sub {
  my $sr = \&PAGI::Server::Protocol::HTTP1::serialize_response;
  my $ch = \&PAGI::Server::Protocol::HTTP1::check_headers;
  is_deeply([$sr->(200, [['Content-Length', 'abc']], 0, undef)], [undef, 'invalid content-length: abc'],
    'a non-numeric Content-Length is an error');
  is_deeply([$sr->(200, [['Content-Length', ' 5']], 0, undef)], [undef, 'invalid content-length:  5'],
    'spaces are not digits');
  is_deeply([$sr->(200, [['Content-Length', '1' x 19]], 0, undef)], [undef, 'invalid content-length: ' . ('1' x 19)],
    'more than 18 digits is an error');
  is_deeply([$sr->(200, [['content-length', '5'], ['Content-Length', '6']], 0, undef)],
    [undef, 'conflicting content-length'], 'two different Content-Lengths conflict');
  my @ok = $sr->(200, [['content-length', '5'], ['Content-Length', '5']], 0, undef);
  is($ok[3], 5, 'the same value twice is fine, and is the announced length');
  is($ch->([['X-A', 'b'], ['Content-Length', '7']]), undef, 'check_headers: good headers give undef');
  is($ch->([['X A', 'b']]), 'invalid header name: X A', 'check_headers: the serializer\'s message');
  is($ch->([['X-A', "b\r\nc"]]), 'invalid header value for X-A', 'check_headers: CR LF in a value');
  is($ch->([['Content-Length', '-1']]), 'invalid content-length: -1', 'check_headers: a bad Content-Length');
  ok(!eval { $sr->(200, [], 0, "\x{263a}"); 1 }, 'a body with a wide character croaks (API misuse)');
  ok(!eval { PAGI::Server::Protocol::HTTP1::serialize_chunk("\x{263a}"); 1 }, 'so does a wide chunk');
  my $up = "caf\x{e9}";
  utf8::upgrade($up);
  is(($sr->(200, [], 0, $up))[3], 4, 'an upgraded string with characters <= 0xFF counts its bytes');
};

subtest 'check_headers given a status: a response head\'s, the status first' => sub {
  my $ch = \&PAGI::Server::Protocol::HTTP1::check_headers;
  is($ch->([['X', 'y']], 200), undef, 'a good status and headers');
  is($ch->(undef, '204'), undef, 'a status as a string, no headers');
  is($ch->([], $_), 'invalid status', 'status ' . ($_ // 'undef') . ': invalid status') for undef, 99, 1000, 'OK', '2xx', '';
  is($ch->('not headers', 'x'), 'invalid status', 'the status before the shape');
  is($ch->('not headers', 200), 'headers must be an array of [name, value] pairs', '... then the shape');
  is($ch->([['X', "a\r\n"]]), 'invalid header value for X', 'no status given: the headers only');
};

subtest 'set_server_header: the Server field of every response serialized' => sub {
  my $set = \&PAGI::Server::Protocol::HTTP1::set_server_header;
  my $server_of = sub { my ($b) = @{sr(204, $_[0] // [], 0, undef)}; $b =~ /^Server: ([^\r]*)\r$/m ? $1 : undef };
  is($server_of->(), undef, 'none until one is set');
  $set->('PAGI::Server/9.9');
  is($server_of->(), 'PAGI::Server/9.9', 'the value set');
  is($server_of->([['server', 'mine']]), undef, "not when the app gives its own");
  like(${sr(204, [['server', 'mine']], 0, undef)}[0], qr/^server: mine\r$/m, "... which goes as given");
  ok(!eval { $set->("a\r\nb"); 1 }, 'a value with CR LF croaks');
  is($server_of->(), 'PAGI::Server/9.9', '... and changes nothing');
  $set->('');
  is($server_of->(), undef, "'': none");
  $set->('x');
  $set->(undef);
  is($server_of->(), undef, 'undef: none');
};

subtest 'serialize_response: head, framing, Connection' => sub {
  PAGI::Server::Protocol::HTTP1::set_server_header('PAGI-Server');
  my ($b, $mode, $close) = @{sr(200, [['Content-Type', 'text/plain'], ['X-CamelCase', 'v']], 0, 'hello')};
  is(undate($b), "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-CamelCase: v\r\nDate: X\r\n"
    . "Server: PAGI-Server\r\nContent-Length: 5\r\n\r\nhello", 'complete response: order, names as given');
  is_deeply([$mode, $close], [1, 0], 'mode 1, keep');
  my sub resp ($status, $headers, $flags, $body) {
    my ($bytes, @rest) = @{sr($status, $headers, $flags, $body)};
    return [undate($bytes), @rest];
  }
  my $std = "Date: X\r\nServer: PAGI-Server\r\n";
  is_deeply(resp(200, [], 0, undef), ["HTTP/1.1 200 OK\r\n${std}Transfer-Encoding: chunked\r\n\r\n", 2, 0, undef],
    'no body, no length, HTTP/1.1: chunked');
  is_deeply(resp(200, [], 4, undef), ["HTTP/1.1 200 OK\r\n${std}Connection: close\r\n\r\n", 3, 1, undef],
    'no body, no length, HTTP/1.0: close-delimited');
  is_deeply(resp(200, [], 4, 'ab'), ["HTTP/1.1 200 OK\r\n${std}Content-Length: 2\r\nConnection: keep-alive\r\n\r\nab", 1, 0, 2],
    'HTTP/1.0 with a body: length and Connection: keep-alive');
  is_deeply(resp(200, [], 6, 'ab'), ["HTTP/1.1 200 OK\r\n${std}Content-Length: 2\r\nConnection: close\r\n\r\nab", 1, 1, 2],
    'HTTP/1.0 and close');
  is_deeply(resp(200, [], 2, ''), ["HTTP/1.1 200 OK\r\n${std}Content-Length: 0\r\nConnection: close\r\n\r\n", 1, 1, 0],
    'close flag; empty body gets Content-Length: 0');
  is_deeply(resp(200, [['content-length', '10']], 0, undef), ["HTTP/1.1 200 OK\r\ncontent-length: 10\r\n$std\r\n", 1, 0, 10],
    "the app's Content-Length: head only, nothing added");
  is_deeply(resp(200, [['Content-Length', '3']], 0, 'abc'), ["HTTP/1.1 200 OK\r\nContent-Length: 3\r\n$std\r\nabc", 1, 0, 3],
    "the app's Content-Length with a body: not doubled");
  is_deeply(resp(200, [], 1, 'hello'), ["HTTP/1.1 200 OK\r\n${std}Content-Length: 5\r\n\r\n", 0, 0, undef],
    'HEAD with a body: its length, no body');
  is_deeply(resp(200, [], 1, undef), ["HTTP/1.1 200 OK\r\n${std}Transfer-Encoding: chunked\r\n\r\n", 0, 0, undef],
    'HEAD, streaming: the GET framing header, mode 0');
  is_deeply(resp(200, [['Content-Length', '9']], 1, undef), ["HTTP/1.1 200 OK\r\nContent-Length: 9\r\n$std\r\n", 0, 0, undef],
    "HEAD with the app's length");
  is_deeply(resp(200, [], 5, undef), ["HTTP/1.1 200 OK\r\n${std}Connection: keep-alive\r\n\r\n", 0, 0, undef],
    'HEAD, HTTP/1.0, streaming: no body follows, so the connection can stay');
  for my $s (204, 304, 100, 101, 103) {
    my ($bytes, $m) = @{resp($s, [], 0, 'body')};
    is($m, 0, "status $s: mode 0");
    unlike($bytes, qr/Content-Length|Transfer-Encoding|body/, "status $s: no framing header, no body");
  }
  is_deeply(resp(304, [['ETag', '"x"'], ['Content-Length', '5']], 0, undef),
    ["HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 5\r\n$std\r\n", 0, 0, undef], '304 keeps the app headers');
  is(resp(299, [], 0, '')->[0] =~ s/\r\n.*//sr, 'HTTP/1.1 299 ', 'unknown status: empty reason');
  is(resp('404', [], 0, '')->[0] =~ s/\r\n.*//sr, 'HTTP/1.1 404 Not Found', 'status as a string');
  my %reason = (200 => 'OK', 201 => 'Created', 204 => 'No Content', 301 => 'Moved Permanently',
    304 => 'Not Modified', 400 => 'Bad Request', 404 => 'Not Found', 408 => 'Request Timeout',
    413 => 'Content Too Large', 414 => 'URI Too Long', 431 => 'Request Header Fields Too Large',
    500 => 'Internal Server Error', 501 => 'Not Implemented', 505 => 'HTTP Version Not Supported');
  for my $s (sort keys %reason) {
    is(resp($s, [], 0, '')->[0] =~ s/\r\n.*//sr, "HTTP/1.1 $s $reason{$s}", "reason for $s");
  }
  is_deeply(resp(200, [['Transfer-Encoding', 'gzip'], ['X', '1']], 0, 'a'),
    ["HTTP/1.1 200 OK\r\nX: 1\r\n${std}Content-Length: 1\r\n\r\na", 1, 0, 1], "the app's Transfer-Encoding is dropped");
  is_deeply(resp(200, [['Connection', 'keep-alive'], ['X', '1']], 0, 'a'),
    ["HTTP/1.1 200 OK\r\nX: 1\r\n${std}Content-Length: 1\r\n\r\na", 1, 0, 1], "the app's Connection is dropped");
  is_deeply(resp(200, [['connection', 'Upgrade, CLOSE ']], 0, 'a'),
    ["HTTP/1.1 200 OK\r\n${std}Content-Length: 1\r\nConnection: close\r\n\r\na", 1, 1, 1],
    "the app's Connection: close token closes");
  my ($bytes) = @{sr(200, [['date', 'Tue, 01 Jan 2030 00:00:00 GMT'], ['SERVER', 'mine']], 0, '')};
  is($bytes, "HTTP/1.1 200 OK\r\ndate: Tue, 01 Jan 2030 00:00:00 GMT\r\nSERVER: mine\r\nContent-Length: 0\r\n\r\n",
    "the app's Date and Server replace ours");
  ($bytes) = @{sr(200, [['X-Bytes', "caf\xc3\xa9\x80"]], 0, "\xff\x00")};
  like($bytes, qr/X-Bytes: caf\xc3\xa9\x80\r\n.*Content-Length: 2\r\n\r\n\xff\x00\z/s, 'bytes 0x80-0xFF pass through');
};

subtest 'serialize_response: invalid app input' => sub {
  for my $s (99, 1000, 'abc', undef, '20', '2000', ' 200', '200 ', '2e2', -200, '') {
    is_deeply(sr($s, [], 0, ''), [undef, 'invalid status'], 'status ' . (defined $s ? "'$s'" : 'undef'));
  }
  for my $case (['Bad Name', 'invalid header name: Bad Name'], ['', 'invalid header name: '],
    ['X:Y', 'invalid header name: X:Y'], ["X\r\nY", "invalid header name: X\r\nY"],
    ["X\x{263a}", "invalid header name: X\x{263a}"], ["X\xe9", "invalid header name: X\xe9"]) {
    is_deeply(sr(200, [['Ok', '1'], [$case->[0], 'v']], 0, ''), [undef, $case->[1]],
      'header name ' . explain_bytes($case->[0]));
  }
  for my $v ("a\rb", "a\nb", "a\0b", "a\r\nX-Injected: 1", "\x{263a}") {
    is_deeply(sr(200, [['X-Foo', $v]], 0, ''), [undef, 'invalid header value for X-Foo'],
      'header value ' . explain_bytes($v));
  }
  my $up = "caf\xe9";
  utf8::upgrade($up);
  my ($bytes) = @{sr(200, [['X', $up]], 0, '')};
  ok(defined $bytes, 'a value upgraded to characters but all <= 0xFF is accepted');
};

subtest 'serialize_chunk and serialize_trailers' => sub {
  is(PAGI::Server::Protocol::HTTP1::serialize_chunk('hello'), "5\r\nhello\r\n", 'a chunk');
  is(PAGI::Server::Protocol::HTTP1::serialize_chunk(''), '', 'an empty chunk is nothing (not the last-chunk)');
  is(PAGI::Server::Protocol::HTTP1::serialize_chunk('x' x 255), "ff\r\n" . ('x' x 255) . "\r\n", 'lowercase hex');
  is(PAGI::Server::Protocol::HTTP1::serialize_chunk('x' x 4096), "1000\r\n" . ('x' x 4096) . "\r\n", '4096 bytes');
  is(PAGI::Server::Protocol::HTTP1::serialize_chunk("\0\r\n"), "3\r\n\0\r\n\r\n", 'binary data');
  is_deeply([PAGI::Server::Protocol::HTTP1::serialize_trailers([])], ["0\r\n\r\n"], 'no trailers');
  is_deeply([PAGI::Server::Protocol::HTTP1::serialize_trailers([['X-Checksum', 'abc'], ['x-b', '2']])],
    ["0\r\nX-Checksum: abc\r\nx-b: 2\r\n\r\n"], 'trailers as given');
  is_deeply([PAGI::Server::Protocol::HTTP1::serialize_trailers([['Bad Name', 'v']])],
    [undef, 'invalid header name: Bad Name'], 'bad trailer name');
  is_deeply([PAGI::Server::Protocol::HTTP1::serialize_trailers([['X-T', "a\nb"]])],
    [undef, 'invalid header value for X-T'], 'LF in a trailer value');
  is_deeply([PAGI::Server::Protocol::HTTP1::serialize_trailers([['X-T', "a\0b"]])],
    [undef, 'invalid header value for X-T'], 'NUL in a trailer value');
};

subtest 'connection_info' => sub {
  my $l = IO::Socket::IP->new(LocalHost => '127.0.0.1', LocalPort => 0, Listen => 5) or die $@;
  my $c = IO::Socket::IP->new(PeerHost => '127.0.0.1', PeerPort => $l->sockport) or die $@;
  my $a = $l->accept;
  is_deeply(PAGI::Server::Protocol::HTTP1::connection_info(fileno $a),
    ['127.0.0.1', $c->sockport, '127.0.0.1', $l->sockport], 'TCP over IPv4: [peer, port, local, port]');
  ok(defined fileno($a), 'the descriptor is still open afterwards');
  is(PAGI::Server::Protocol::HTTP1::connection_info(fileno $l), undef, 'a listening socket has no peer: undef');
  pipe(my $r, my $w);
  is(PAGI::Server::Protocol::HTTP1::connection_info(fileno $r), undef, 'a pipe: undef');
  socketpair(my $x, my $y, AF_UNIX, SOCK_STREAM, PF_UNSPEC) or die $!;
  my $u = PAGI::Server::Protocol::HTTP1::connection_info(fileno $x);
  is_deeply([@$u[0, 1, 3]], [undef, undef, undef], 'a unix socket: no hosts or ports');
  ok(defined $u->[2], '... and a (possibly empty) path');
  SKIP: {
    my $l6 = IO::Socket::IP->new(LocalHost => '::1', LocalPort => 0, Listen => 5)
      or skip 'no IPv6 loopback', 2;
    my $c6 = IO::Socket::IP->new(PeerHost => '::1', PeerPort => $l6->sockport) or skip 'no IPv6 connect', 2;
    my $a6 = $l6->accept;
    is_deeply(PAGI::Server::Protocol::HTTP1::connection_info(fileno $a6),
      ['::1', $c6->sockport, '::1', $l6->sockport], 'TCP over IPv6');
    my $any = IO::Socket::IP->new(LocalHost => '::', LocalPort => 0, Listen => 5, V6Only => 0)
      or skip 'no dual-stack socket', 1;
    my $c4 = IO::Socket::IP->new(PeerHost => '127.0.0.1', PeerPort => $any->sockport)
      or skip 'dual-stack connect failed', 1;
    my $a4 = $any->accept;
    is(PAGI::Server::Protocol::HTTP1::connection_info(fileno $a4)->[0], '127.0.0.1',
      'an IPv4-mapped IPv6 peer is shown as IPv4');
  }
};

subtest 'error kinds: the status table' => sub {
  my %status = (bad_request_line => 400, bad_header => 400, bad_host => 400, bad_content_length => 400,
    conflicting_length => 400, bad_transfer_encoding => 400, bad_chunk => 400, body_too_large => 413,
    uri_too_long => 414, headers_too_large => 431, unsupported_transfer_encoding => 501,
    unsupported_version => 505);
  is(PAGI::Server::Protocol::HTTP1::error_status($_), $status{$_}, "$_ -> $status{$_}") for sort keys %status;
  my @missing = grep { !$SEEN_KIND{$_} } sort keys %MSG;
  is("@missing", '', 'every parser error kind was produced by some test above');
};

done_testing;
