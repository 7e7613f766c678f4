package PAGI::Test::H2Corpus;
use v5.32;
use warnings;
use experimental 'signatures';
use Exporter 'import';
use PAGI::Test::H2 qw(frame settings hello get post literal_block
  DATA HEADERS PRIORITY RST_STREAM SETTINGS PUSH_PROMISE PING GOAWAY WINDOW_UPDATE CONTINUATION
  END_STREAM ACK END_HEADERS PADDED PRIORITY_FLAG PREFACE);

# HTTP/2 scenarios for the codec tests: settings, then steps a connection would take
# (feed bytes, respond, send data, take output...). t/33 runs each on both backends and
# compares every result; t/11 checks some of them by what they mean.
#
#   scenarios() -> ({name, settings, steps => [[op, args...], ...]}, ...)
#   bad_frames() -> ([name, bytes after the handshake or undef, expected], ...)
#   run_scenario($session_maker, $scenario, $split) -> [log lines]

our @EXPORT_OK = qw(scenarios bad_frames run_scenario);

my $ACKED = settings() . frame(SETTINGS, ACK, 0);    # the client's SETTINGS and its ack of ours

sub scenarios {
  my @s;
  my $add = sub ($name, $settings, $build) {
    my $c = PAGI::Test::H2->new;
    push @s, {name => $name, settings => $settings, steps => [$build->($c)]};
  };

  $add->('GET, a body in one piece', {}, sub ($c) {
    (['feed', hello() . frame(SETTINGS, ACK, 0) . $c->headers(1, [get('/')], END_STREAM)],
     ['respond', 1, 200, [['Content-Type', 'text/plain'], ['X-Thing', 'a b']], 0],
     ['send_data', 1, 'hello', 1], ['output'])
  });
  $add->('the request hash: path, query, cookies, host, sse, expect', {}, sub ($c) {
    (['feed', hello() . $c->headers(1, [get('/caf%C3%A9/a%2Fb%zz?x=1&y=%41', 'cookie' => 'a=1',
      'accept' => 'text/html, Text/Event-Stream', 'cookie' => 'b=2', 'user-agent' => 'ua',
      'expect' => '100-continue', 'host' => 'Example.COM')], END_STREAM)],
     ['feed', $c->headers(3, [':method' => 'OPTIONS', ':scheme' => 'http', ':authority' => 'h', ':path' => '*'], END_STREAM)],
     ['feed', $c->headers(5, [':method' => 'GET', ':scheme' => 'http', ':path' => '/no-authority', 'host' => 'only.host'], END_STREAM)],
     ['feed', $c->headers(7, [get("/\xc3\xa9t\xc3\xa9")], END_STREAM)],
     ['feed', $c->headers(9, [':method' => 'GET', ':scheme' => 'foo', ':authority' => 'h', ':path' => 'relative'], END_STREAM)],
     ['output'])
  });
  $add->('POST: content-length, a body in frames, consumed, trailers both ways', {initial_window_size => 1000}, sub ($c) {
    (['feed', hello() . frame(SETTINGS, ACK, 0) . $c->headers(1, [post('/up', 'content-length' => '1500')])],
     ['feed', frame(DATA, 0, 1, 'a' x 400) . frame(DATA, 0, 1, 'b' x 500)], ['output'],
     ['consumed', 1, 400], ['output'], ['consumed', 1, 500], ['output'],
     ['feed', frame(DATA, END_STREAM, 1, 'c' x 600)],
     ['respond', 1, 200, [['grpc-encoding', 'identity']], 0], ['send_data', 1, 'xyz', 0], ['output'],
     ['send_trailers', 1, [['Grpc-Status', '0'], ['grpc-message', 'ok']]], ['output'])
  });
  $add->('padded DATA and HEADERS, priority fields', {}, sub ($c) {
    my $block = $c->block(post('/p'));
    (['feed', hello() . frame(HEADERS, END_HEADERS | PADDED | PRIORITY_FLAG, 1, "\x03" . pack('NC', 0, 15) . $block . "\0\0\0")],
     ['feed', frame(DATA, PADDED, 1, "\x02abc\0\0") . frame(DATA, PADDED | END_STREAM, 1, "\x00de")],
     ['feed', frame(PRIORITY, 0, 3, pack('NC', 0, 1))],
     ['output'])
  });
  $add->('a request body from a client with trailers', {}, sub ($c) {
    (['feed', hello() . $c->headers(1, [post('/t', 'te' => 'trailers')]) . frame(DATA, 0, 1, 'body')
      . $c->headers(1, ['grpc-status' => '0', 'x-sum' => 'abc'], END_STREAM)],
     ['respond', 1, 204, [], 1], ['output'])
  });
  $add->('streams side by side', {}, sub ($c) {
    (['feed', hello() . $c->headers(1, [post('/one')]) . $c->headers(3, [post('/two')])
      . frame(DATA, 0, 3, 'three') . frame(DATA, 0, 1, 'one') . frame(DATA, END_STREAM, 3, '') . frame(DATA, END_STREAM, 1, '!')],
     ['respond', 3, 200, [], 0], ['respond', 1, 201, [['content-length', '2']], 0],
     ['send_data', 1, 'ok', 1], ['output'], ['send_data', 3, 'later', 1], ['output'],
     ['open_streams'], ['last_stream_id'])
  });
  $add->('HEAD, 1xx interim responses, 304', {}, sub ($c) {
    (['feed', hello() . $c->headers(1, [':method' => 'HEAD', ':scheme' => 'http', ':authority' => 'h', ':path' => '/'], END_STREAM)
      . $c->headers(3, [post('/c', 'expect' => '100-continue', 'content-length' => '1')])],
     ['respond', 1, 200, [['content-length', '100']], 1],
     ['respond', 3, 100, [], 0], ['respond', 3, 103, [['link', '</s.css>; rel=preload']], 0], ['output'],
     ['feed', frame(DATA, END_STREAM, 3, 'x')], ['respond', 3, 304, [], 1], ['output'])
  });
  $add->('extended CONNECT (WebSocket over HTTP/2)', {}, sub ($c) {
    (['feed', hello() . $c->headers(1, [':method' => 'CONNECT', ':protocol' => 'websocket', ':scheme' => 'https',
      ':authority' => 'h', ':path' => '/chat?room=1', 'sec-websocket-version' => '13', 'origin' => 'https://h'])],
     ['respond', 1, 200, [['sec-websocket-protocol', 'chat']], 0], ['output'],
     ['feed', frame(DATA, 0, 1, "\x81\x85abcd" . "\x29\x07\x0f\x08\x0e")], ['send_data', 1, "\x81\x02hi", 0], ['output'],
     ['feed', frame(DATA, END_STREAM, 1, '')], ['send_data', 1, '', 1], ['output'])
  });
  $add->('our side ends first: a response before the whole body (RST_STREAM NO_ERROR), a tunnel (none)', {}, sub ($c) {
    (['feed', hello() . $ACKED . $c->headers(1, [post('/up')]) . frame(DATA, 0, 1, 'part')],
     ['respond', 1, 413, [], 0], ['send_data', 1, 'no', 1], ['output'],
     ['feed', frame(DATA, END_STREAM, 1, 'late') . $c->headers(3, [':method' => 'CONNECT', ':protocol' => 'websocket',
      ':scheme' => 'http', ':authority' => 'h', ':path' => '/ws', 'sec-websocket-version' => '13'])],
     ['respond', 3, 200, [], 0], ['send_data', 3, "\x88\x00", 1], ['output'],
     ['feed', frame(DATA, END_STREAM, 3, "\x88\x80abcd")], ['output'])
  });
  $add->('CONNECT refused, extended CONNECT not enabled', {enable_connect_protocol => 0}, sub ($c) {
    (['feed', hello() . $c->headers(1, [':method' => 'CONNECT', ':authority' => 'h:443'])],
     ['respond', 1, 501, [['content-type', 'text/plain']], 0], ['send_data', 1, 'no', 1], ['output'],
     ['feed', $c->headers(3, [':method' => 'CONNECT', ':protocol' => 'websocket', ':scheme' => 'https', ':authority' => 'h', ':path' => '/'])],
     ['output'])
  });
  $add->('the peer resets a stream; we reset one', {}, sub ($c) {
    (['feed', hello() . $c->headers(1, [get('/a')]) . $c->headers(3, [get('/b')], END_STREAM)],
     ['respond', 3, 200, [], 0], ['send_data', 3, 'partial', 0],
     ['feed', frame(RST_STREAM, 0, 1, pack 'N', 8)],
     ['reset', 3, 8], ['buffered', 3], ['output'], ['send_data', 3, 'more', 0],
     ['feed', frame(DATA, 0, 1, 'late') . frame(WINDOW_UPDATE, 0, 3, pack 'N', 10)], ['output'])
  });
  $add->('graceful shutdown: a notice, then the last stream id', {}, sub ($c) {
    (['feed', hello() . $ACKED . $c->headers(1, [get('/')], END_STREAM)],
     ['goaway', 0, 1], ['output'], ['feed', $c->headers(3, [get('/b')], END_STREAM)],
     ['goaway', 0, 0], ['output'], ['feed', $c->headers(5, [get('/c')], END_STREAM)],
     ['is_closed'], ['respond', 1, 200, [], 1], ['respond', 3, 200, [], 1], ['output'], ['is_closed'])
  });
  $add->('an immediate GOAWAY with an error code', {}, sub ($c) {
    (['feed', hello() . $c->headers(1, [get('/')], END_STREAM)], ['goaway', 2, 0], ['output'], ['is_closed'],
     ['feed', $c->headers(3, [get('/b')], END_STREAM)])
  });
  $add->('the peer says GOAWAY', {}, sub ($c) {
    (['feed', hello() . $c->headers(1, [get('/')], END_STREAM) . frame(GOAWAY, 0, 0, pack('NN', 0, 0) . 'bye')],
     ['is_closed'], ['respond', 1, 200, [], 1], ['output'], ['is_closed'])
  });
  $add->('PING, SETTINGS, an ignored unknown frame', {}, sub ($c) {
    (['feed', hello(1 => 0, 4 => 100, 5 => 20000, 6 => 1000, 3 => 5) . frame(PING, 0, 0, '12345678')
      . frame(PING, ACK, 0, 'abcdefgh') . frame(0xfa, 0x3, 0, 'x') . settings(9 => 0, 0x7777 => 3)],
     ['feed', $c->headers(1, [get('/w')], END_STREAM)],
     ['respond', 1, 200, [['content-length', '300']], 0], ['send_data', 1, 'z' x 300, 1], ['output'],
     ['feed', frame(WINDOW_UPDATE, 0, 1, pack 'N', 150)], ['output'],
     ['feed', settings(4 => 250)], ['output'])
  });
  $add->('a zero window, then WINDOW_UPDATE', {}, sub ($c) {
    (['feed', hello(4 => 0) . $c->headers(1, [get('/')], END_STREAM)],
     ['respond', 1, 200, [], 0], ['send_data', 1, 'q' x 5000, 1], ['output'], ['buffered', 1], ['want_write'],
     ['feed', frame(WINDOW_UPDATE, 0, 1, pack 'N', 3000)], ['output'], ['buffered', 1],
     ['feed', frame(WINDOW_UPDATE, 0, 1, pack 'N', 3000)], ['output'])
  });
  $add->('a large body handed out in pieces', {}, sub ($c) {
    (['feed', hello(4 => 1 << 20) . frame(WINDOW_UPDATE, 0, 0, pack 'N', 1 << 20) . $c->headers(1, [get('/big')], END_STREAM)],
     ['respond', 1, 200, [], 0], ['send_data', 1, join('', map { chr(65 + $_ % 26) x 1000 } 0 .. 99), 1],
     (map { ['output', 7000] } 1 .. 17), ['output'])
  });
  $add->('app errors', {}, sub ($c) {
    (['feed', hello() . $c->headers(1, [get('/')], END_STREAM)],
     ['send_data', 1, 'x', 0], ['send_trailers', 1, []], ['respond', 1, 99, [], 1], ['respond', 1, 101, [], 1],
     ['respond', 1, '2000', [], 1], ['respond', 1, undef, [], 1],
     ['respond', 1, 200, [['a b', 'x']], 1], ['respond', 1, 200, [['x', "a\r\nb"]], 1],
     ['respond', 1, 200, [['content-length', 'x']], 1], ['respond', 1, 200, [['content-length', '1'], ['content-length', '2']], 1],
     ['respond', 1, 200, 'not a list', 1], ['respond', 1, 200, [['one']], 1], ['respond', 3, 200, [], 1],
     ['respond', 1, 200, [['connection', 'close'], ['Keep-Alive', '1'], ['te', 'gzip'], ['TE', 'Trailers'],
       ['upgrade', 'x'], ['transfer-encoding', 'chunked'], ['proxy-connection', 'x'], ['Date', 'then'], ['server', 'me']], 0],
     ['respond', 1, 200, [], 1], ['send_trailers', 1, [['bad name', 'x']]], ['send_trailers', 1, 'x'],
     ['send_data', 1, 'ok', 1], ['send_data', 1, 'again', 0], ['send_trailers', 1, []], ['output'], ['send_data', 1, 'gone', 0])
  });
  $add->('requests refused with a status', {max_headers => 3}, sub ($c) {
    (['feed', hello() . $c->headers(1, [get('/', a => 1, cookie => 'x', cookie => 'y', b => 2, c => 3)], END_STREAM)],
     ['feed', $c->headers(3, [get('/', a => 1, cookie => 'x', cookie => 'y', b => 2)], END_STREAM)],
     ['feed', $c->headers(5, [get('/', 'host' => 'other.example')], END_STREAM)],
     ['feed', $c->headers(7, [get('/', d => 4, e => 5, f => 6, g => 7)]) . frame(DATA, 0, 7, 'body') . frame(DATA, END_STREAM, 7, 'end')],
     ['feed', frame(HEADERS, END_HEADERS | END_STREAM, 9, literal_block(':method' => 'GET', ':scheme' => 'http', ':authority' => 'h', ':path' => "/\xff"))],
     ['respond', 1, 431, [], 1], ['respond', 7, 431, [], 1], ['output'])
  });
  $add->('an HPACK bomb is bounded', {}, sub ($c) {
    my $big = 'x' x 3000;
    (['feed', hello() . $c->headers(1, [get('/', map { (bomb => $big) } 1 .. 40)], END_STREAM)],
     ['feed', $c->headers(3, [get('/ok', bomb => $big)], END_STREAM)], ['output'])
  });
  $add->('invalid regular fields are dropped', {}, sub ($c) {
    (['feed', hello() . frame(HEADERS, END_HEADERS | END_STREAM, 1, literal_block(get('/'), 'x-space' => ' padded',
      'x-nul' => "a\0b", 'bad name' => 'v', 'x-ok' => 'fine', 'x-del' => "\x7f", '' => 'empty', 'x-tab' => "a\tb"))],
     ['output'])
  });
  $add->('streams over the limit before the SETTINGS ack: REFUSED_STREAM', {max_concurrent_streams => 2}, sub ($c) {
    (['feed', hello() . join('', map { $c->headers($_, [get("/$_")]) } 1, 3, 5)], ['output'],
     ['feed', frame(DATA, END_STREAM, 5, 'x') . frame(DATA, END_STREAM, 1, '')], ['output'],
     ['feed', frame(SETTINGS, ACK, 0) . $c->headers(7, [get('/7')])], ['output'])
  });
  $add->('rapid reset', {rst_rate_limit => [5, 0]}, sub ($c) {
    (['feed', hello() . $ACKED . join('', map { $c->headers(2 * $_ + 1, [get('/')]) . frame(RST_STREAM, 0, 2 * $_ + 1, pack 'N', 8) } 0 .. 9)],
     ['output'], ['is_closed'])
  });
  $add->('h2c upgrade: stream 1 is the HTTP/1.1 request', {upgrade => 'AAMAAABkAAQAAP__'}, sub ($c) {
    (['open_streams'], ['feed', hello() . $c->headers(3, [get('/next')], END_STREAM)],
     ['respond', 1, 200, [], 0], ['send_data', 1, 'upgraded', 1], ['respond', 3, 200, [], 1], ['output'])
  });
  $add->('h2c upgrade of a HEAD request', {upgrade => '', upgrade_head => 1}, sub ($c) {
    (['feed', hello()], ['respond', 1, 200, [['content-length', '5']], 1], ['output'])
  });
  $add->('a bad HTTP2-Settings value', {upgrade => 'AAMAAABk!'}, sub ($c) { () });
  $add->('a bad HTTP2-Settings setting', {upgrade => 'AAQAgAAA'}, sub ($c) { () });
  $add->('the client never reads: output stays bounded', {}, sub ($c) {
    # (no read asks for more than 1000 acknowledgements: the output buffer's cap and
    # then nghttp2's queue limit end it)
    (['feed', hello() . $ACKED], map { ['feed', frame(PING, 0, 0, '01234567') x 900] } 1 .. 6)
  });
  # Where the backends differ (t/33's %TODO, doc/codec.md): nghttp2's "glitch" limit
  # (1000 suspicious frames, 33 a second more: PRIORITY, unknown types, empty DATA...)
  $add->('glitch rate limit: many PRIORITY frames', {}, sub ($c) {
    (['feed', hello() . $ACKED . frame(PRIORITY, 0, 1, pack('NC', 0, 1)) x 1100], ['output'])
  });
  # and nghttp2's scheduling of DATA by RFC 9218 priorities (urgency, incremental)
  $add->('DATA of concurrent streams with RFC 9218 priorities', {}, sub ($c) {
    (['feed', hello(4 => 1 << 20) . $c->headers(1, [get('/a', priority => 'u=5')], END_STREAM)
      . $c->headers(3, [get('/b', priority => 'u=0, i')], END_STREAM) . $c->headers(5, [get('/c', priority => 'u=0, i')], END_STREAM)],
     (map { ['respond', $_, 200, [], 0] } 1, 3, 5), ['output'],
     (map { ['send_data', $_, chr(96 + $_) x 40000, 1] } 1, 3, 5), ['output'])
  });
  for my $bad (bad_frames()) {
    my ($name, $bytes, $expect, $settings) = @$bad;
    $add->("bad: $name", $settings // {}, sub ($c) { (['feed', ref $bytes ? $bytes->($c) : $bytes], ['output'], ['is_closed']) });
  }
  return @s;
}

# Bad input by RFC 9113 section: [name, bytes (or a sub given a client), expected: [GOAWAY
# => its code, the error kind] (a connection error), [RST_STREAM => its code, the kind of
# the 'error' event] (a stream error) or [IGNORED => 0], optional settings]
sub bad_frames {
  my $h = hello() . $ACKED;
  my $req = sub ($c) { $c->headers(1, [get('/')]) };
  return (
    ['3.4 a bad connection preface', "GET / HTTP/1.1\r\nHost: x\r\n\r\n", [GOAWAY => 1, 'bad_preface']],
    ['3.4 the first frame is not SETTINGS', PREFACE . frame(PING, 0, 0, '12345678'), [GOAWAY => 1, 'protocol_error']],
    ['3.4 the first SETTINGS is an ACK', PREFACE . frame(SETTINGS, ACK, 0), [GOAWAY => 1, 'protocol_error']],
    ['4.2 a frame over SETTINGS_MAX_FRAME_SIZE', $h . frame(0xbb, 0, 0, 'x' x 16385), [GOAWAY => 6, 'frame_size_error']],
    ['5.1 HEADERS on an even stream id', sub ($c) { $h . $c->headers(2, [get('/')]) }, [GOAWAY => 1, 'protocol_error']],
    # (RFC 9113: PROTOCOL_ERROR; nghttp2 does not remember every stream id it skipped)
    ['5.1.1 a stream id lower than one used is ignored', sub ($c) { $h . $c->headers(5, [get('/')], END_STREAM) . $c->headers(3, [get('/')]) },
      [IGNORED => 0]],
    ['5.1 DATA on an idle stream', $h . frame(DATA, 0, 1, 'x'), [GOAWAY => 1, 'protocol_error']],
    ['5.1 DATA on a half-closed (remote) stream', sub ($c) { $h . $c->headers(1, [get('/')], END_STREAM) . frame(DATA, 0, 1, 'x') },
      [GOAWAY => 5, 'stream_closed']],
    ['5.1 HEADERS on a half-closed (remote) stream', sub ($c) { $h . $c->headers(1, [get('/')], END_STREAM) . $c->headers(1, ['x' => 'y'], END_STREAM) },
      [GOAWAY => 5, 'stream_closed']],
    ['5.1 RST_STREAM on an idle stream', $h . frame(RST_STREAM, 0, 1, pack 'N', 0), [GOAWAY => 1, 'protocol_error']],
    ['5.1 WINDOW_UPDATE on an idle stream', $h . frame(WINDOW_UPDATE, 0, 1, pack 'N', 1), [GOAWAY => 1, 'protocol_error']],
    ['5.1.2 streams over the limit after the ack', sub ($c) { $h . join('', map { $c->headers($_, [get('/')]) } 1, 3, 5) },
      [GOAWAY => 1, 'protocol_error'], {max_concurrent_streams => 2}],
    ['5.1.2 streams over the limit before the ack', sub ($c) { hello() . join('', map { $c->headers($_, [get('/')]) } 1, 3, 5) },
      [RST_STREAM => 7, 'refused_stream'], {max_concurrent_streams => 2}],
    ['5.4.1 HPACK: an index out of the table', $h . frame(HEADERS, END_HEADERS, 1, "\xff\xff\xff\xff\x7f"), [GOAWAY => 9, 'compression_error']],
    ['5.4.1 HPACK: a table size update over the setting', $h . frame(HEADERS, END_HEADERS, 1, "\x3f\xe2\x1f\x82"), [GOAWAY => 9, 'compression_error']],
    ['5.4.1 HPACK: a bad Huffman string', $h . frame(HEADERS, END_HEADERS, 1, "\x82\x86\x84\x41\x81\x00"), [GOAWAY => 9, 'compression_error']],
    ['5.4.1 HPACK: a truncated block', $h . frame(HEADERS, END_HEADERS, 1, "\x82\x86\x44\x05/ab"), [GOAWAY => 9, 'compression_error']],
    ['6.1 DATA on stream 0', $h . frame(DATA, 0, 0, 'x'), [GOAWAY => 1, 'protocol_error']],
    ['6.1 DATA with too much padding', sub ($c) { $h . $req->($c) . frame(DATA, PADDED, 1, "\x05abc") }, [GOAWAY => 1, 'protocol_error']],
    ['6.2 HEADERS on stream 0', sub ($c) { $h . $c->headers(0, [get('/')]) }, [GOAWAY => 1, 'protocol_error']],
    ['6.2 HEADERS depending on itself', sub ($c) { $h . frame(HEADERS, END_HEADERS | PRIORITY_FLAG, 1, pack('NC', 1, 15) . $c->block(get('/'))) },
      [GOAWAY => 1, 'protocol_error']],
    ['6.3 PRIORITY of the wrong length', $h . frame(PRIORITY, 0, 1, 'abcd'), [GOAWAY => 6, 'frame_size_error']],
    # (RFC 9113 says PROTOCOL_ERROR; nghttp2 ignores a PRIORITY frame but for its length)
    ['6.3 PRIORITY on stream 0 is ignored', $h . frame(PRIORITY, 0, 0, 'abcde'), [IGNORED => 0]],
    ['6.4 RST_STREAM of the wrong length', sub ($c) { $h . $req->($c) . frame(RST_STREAM, 0, 1, 'abc') }, [GOAWAY => 6, 'frame_size_error']],
    ['6.4 RST_STREAM on stream 0', $h . frame(RST_STREAM, 0, 0, pack 'N', 0), [GOAWAY => 1, 'protocol_error']],
    ['6.5 SETTINGS on a stream', $h . frame(SETTINGS, 0, 1, ''), [GOAWAY => 1, 'protocol_error']],
    ['6.5 SETTINGS not a multiple of 6', $h . frame(SETTINGS, 0, 0, 'abcde'), [GOAWAY => 6, 'frame_size_error']],
    ['6.5 SETTINGS ACK with a payload', $h . frame(SETTINGS, ACK, 0, pack 'nN', 1, 1), [GOAWAY => 6, 'frame_size_error']],
    ['6.5.2 SETTINGS_ENABLE_PUSH = 2', $h . settings(2 => 2), [GOAWAY => 1, 'protocol_error']],
    ['6.5.2 SETTINGS_INITIAL_WINDOW_SIZE over 2^31-1', $h . settings(4 => 2**31), [GOAWAY => 3, 'flow_control_error']],
    ['6.5.2 SETTINGS_MAX_FRAME_SIZE under 16384', $h . settings(5 => 16383), [GOAWAY => 1, 'protocol_error']],
    ['6.5.2 SETTINGS_MAX_FRAME_SIZE over 2^24-1', $h . settings(5 => 2**24), [GOAWAY => 1, 'protocol_error']],
    ['6.5 too many settings in one frame', $h . settings(map { (0x100 + $_ => 1) } 1 .. 33), [GOAWAY => 11, 'enhance_your_calm']],
    ['6.6 PUSH_PROMISE from a client', sub ($c) { $h . $req->($c) . frame(PUSH_PROMISE, END_HEADERS, 1, pack('N', 2) . $c->block(get('/p'))) },
      [GOAWAY => 1, 'protocol_error']],
    ['6.7 PING of the wrong length', $h . frame(PING, 0, 0, '1234567'), [GOAWAY => 6, 'frame_size_error']],
    ['6.7 PING on a stream', $h . frame(PING, 0, 1, '12345678'), [GOAWAY => 1, 'protocol_error']],
    ['6.8 GOAWAY on a stream', $h . frame(GOAWAY, 0, 1, pack 'NN', 0, 0), [GOAWAY => 1, 'protocol_error']],
    ['6.8 GOAWAY naming a client stream', $h . frame(GOAWAY, 0, 0, pack 'NN', 1, 0), [GOAWAY => 1, 'protocol_error']],
    ['6.9 WINDOW_UPDATE of the wrong length', $h . frame(WINDOW_UPDATE, 0, 0, 'abc'), [GOAWAY => 6, 'frame_size_error']],
    ['6.9 WINDOW_UPDATE of 0 on the connection', $h . frame(WINDOW_UPDATE, 0, 0, pack 'N', 0), [GOAWAY => 1, 'protocol_error']],
    ['6.9 WINDOW_UPDATE of 0 on a stream', sub ($c) { $h . $req->($c) . frame(WINDOW_UPDATE, 0, 1, pack 'N', 0) }, [GOAWAY => 1, 'protocol_error']],
    ['6.9.1 the connection window over 2^31-1', $h . frame(WINDOW_UPDATE, 0, 0, pack 'N', 2**31 - 1), [GOAWAY => 3, 'flow_control_error']],
    ['6.9.1 a stream window over 2^31-1', sub ($c) { $h . $req->($c) . frame(WINDOW_UPDATE, 0, 1, pack 'N', 2**31 - 1) },
      [GOAWAY => 3, 'flow_control_error']],
    ['6.9.1 DATA over the stream window', sub ($c) { $h . $c->headers(1, [post('/')]) . join('', map { frame(DATA, 0, 1, 'x' x 16384) } 1 .. 4) . frame(DATA, 0, 1, 'y' x 100) },
      [GOAWAY => 3, 'flow_control_error']],
    ['6.10 CONTINUATION without HEADERS', $h . frame(CONTINUATION, END_HEADERS, 1, "\x82"), [GOAWAY => 1, 'protocol_error']],
    ['6.10 another frame inside a header block', sub ($c) { $h . frame(HEADERS, 0, 1, $c->block(get('/'))) . frame(PING, 0, 0, '12345678') },
      [GOAWAY => 1, 'protocol_error']],
    ['6.10 CONTINUATION of another stream', sub ($c) { $h . frame(HEADERS, 0, 1, $c->block(get('/'))) . frame(CONTINUATION, END_HEADERS, 3, '') },
      [GOAWAY => 1, 'protocol_error']],
    ['CVE-2024-28182 CONTINUATION flood', sub ($c) { $h . frame(HEADERS, 0, 1, substr($c->block(get('/')), 0, 1)) . frame(CONTINUATION, 0, 1, '') x 20 },
      [GOAWAY => 11, 'continuation_flood']],
    ['8.1 content-length and the DATA disagree', sub ($c) { $h . $c->headers(1, [post('/', 'content-length' => '3')]) . frame(DATA, END_STREAM, 1, 'abcd') },
      [GOAWAY => 1, 'protocol_error']],
    ['8.1 content-length above the body at END_STREAM', sub ($c) { $h . $c->headers(1, [post('/', 'content-length' => '3')]) . frame(DATA, END_STREAM, 1, 'ab') },
      [GOAWAY => 1, 'protocol_error']],
    ['8.1 trailers without END_STREAM', sub ($c) { $h . $c->headers(1, [post('/')]) . $c->headers(1, ['x' => 'y']) },
      [GOAWAY => 1, 'protocol_error']],
    ['8.1.1 pseudo-header field in trailers', sub ($c) { $h . $c->headers(1, [post('/')]) . $c->headers(1, [':path' => '/x'], END_STREAM) },
      [GOAWAY => 1, 'protocol_error']],
    ['8.2 an upper-case field name', $h . frame(HEADERS, END_HEADERS, 1, literal_block(get('/'), 'X-Upper' => '1')),
      [GOAWAY => 1, 'protocol_error']],
    ['8.2.2 a connection-specific field', sub ($c) { $h . $c->headers(1, [get('/', 'connection' => 'keep-alive')]) }, [GOAWAY => 1, 'protocol_error']],
    ['8.2.2 TE other than trailers', sub ($c) { $h . $c->headers(1, [get('/', 'te' => 'gzip')]) }, [GOAWAY => 1, 'protocol_error']],
    ['8.3 a pseudo-header field after a regular one', sub ($c) { $h . $c->headers(1, [':method' => 'GET', 'x' => 'y', ':scheme' => 'http', ':path' => '/', ':authority' => 'h']) },
      [GOAWAY => 1, 'protocol_error']],
    ['8.3 an unknown pseudo-header field', sub ($c) { $h . $c->headers(1, [get('/', ':status' => '200')]) }, [GOAWAY => 1, 'protocol_error']],
    ['8.3.1 a request without :path', sub ($c) { $h . $c->headers(1, [':method' => 'GET', ':scheme' => 'http', ':authority' => 'h']) },
      [GOAWAY => 1, 'protocol_error']],
    ['8.3.1 an empty :path', $h . frame(HEADERS, END_HEADERS, 1, literal_block(':method' => 'GET', ':scheme' => 'http', ':authority' => 'h', ':path' => '')),
      [GOAWAY => 1, 'protocol_error']],
    ['8.3.1 two :method fields', sub ($c) { $h . $c->headers(1, [get('/', ':method' => 'PUT')]) }, [GOAWAY => 1, 'protocol_error']],
    ['8.3.1 neither :authority nor host', sub ($c) { $h . $c->headers(1, [':method' => 'GET', ':scheme' => 'http', ':path' => '/']) },
      [GOAWAY => 1, 'protocol_error']],
    ['8.3.1 a path not starting with / for http', sub ($c) { $h . $c->headers(1, [get('x')]) }, [GOAWAY => 1, 'protocol_error']],
    ['8.5 CONNECT with a :path', sub ($c) { $h . $c->headers(1, [':method' => 'CONNECT', ':authority' => 'h:1', ':path' => '/']) },
      [GOAWAY => 1, 'protocol_error']],
    ['8.6 two host fields', sub ($c) { $h . $c->headers(1, [get('/', host => 'a', host => 'a')]) }, [GOAWAY => 1, 'protocol_error']],
    ['8.6 a bad :authority', sub ($c) { $h . $c->headers(1, [':method' => 'GET', ':scheme' => 'http', ':authority' => 'us@h', ':path' => '/']) },
      [GOAWAY => 1, 'protocol_error']],
    ['CVE-2023-44487 rapid reset', sub ($c) { $h . join('', map { $c->headers(2 * $_ + 1, [get('/')]) . frame(RST_STREAM, 0, 2 * $_ + 1, pack 'N', 8) } 0 .. 9) },
      [GOAWAY => 2, 'rapid_reset'], {rst_rate_limit => [5, 0]}],
    ['a PING flood', $h . frame(PING, 0, 0, '01234567') x 1200, [GOAWAY => 11, 'flood']],
    ['a SETTINGS flood', $h . settings() x 1200, [GOAWAY => 11, 'flood']],
  );
}

# Runs a scenario on a session made by $new (the backend's new_session); every result
# goes into the log. $split: feed each step's bytes in two parts at this offset (when
# inside them), or 'bytes': one byte at a time.
sub run_scenario ($new, $sc, $split = undef) {
  my @log;
  my ($s, $err) = $new->($sc->{settings});
  return [['new', $err]] unless $s;
  my $reader = PAGI::Test::H2->new;
  my $read = sub ($bytes) { [eval { [$reader->read($bytes)] } // "unreadable: $@"] };
  push @log, ['preface', $read->($s->output(1 << 20))];
  for my $step (@{$sc->{steps}}) {
    my ($op, @a) = @$step;
    if ($op eq 'feed') {
      my $bytes = $a[0];
      my @parts = !defined $split ? ($bytes)
        : $split eq 'bytes' ? split(//, $bytes)
        : $split > 0 && $split < length $bytes ? (substr($bytes, 0, $split), substr($bytes, $split)) : ($bytes);
      my (@events, $error);
      for my $p (@parts) {
        my ($ev, $e) = $s->feed($p);
        push @events, @$ev;
        $error = $e;
      }
      push @log, ['feed', _merge(\@events), $error];
    }
    elsif ($op eq 'output') {
      # (without a limit: all there is)
      my $max = $a[0] // ~0 >> 1;
      my $out = @a ? $s->output($max) : $s->output;
      # (not the length itself: nghttp2 puts its reason in a GOAWAY's debug data)
      push @log, ['output', length $out <= $max ? 'within max' : 'OVER MAX', $read->($out), $s->events];
    }
    else {
      push @log, [$op, [$s->$op(@a)]];
    }
  }
  push @log, ['end', $s->is_closed, $s->want_write, $s->open_streams, $s->last_stream_id, $s->error];
  return \@log;
}

# Consecutive data events of one stream as one (reads split differently split them)
sub _merge ($events) {
  my @out;
  for my $e (@$events) {
    if ($e->[0] eq 'data' && @out && $out[-1][0] eq 'data' && $out[-1][1] == $e->[1] && !$out[-1][3]) {
      $out[-1] = ['data', $e->[1], $out[-1][2] . $e->[2], $e->[3]];
      next;
    }
    push @out, $e;
  }
  return \@out;
}

1;
