use v5.32;
use warnings;
use experimental 'signatures';
use Test::More;
use Config;

# What only the XS backend can get wrong: a Rust panic must become a croak, never a
# crash; odd Perl values (undef, numbers, references, magic, overloading, characters)
# must be converted, not trusted; big inputs; results must be ordinary writable
# scalars even where they share a buffer; threads; leaks.

BEGIN {
  eval { require PAGI::Server::Protocol::HTTP1::XS; 1 }
    or plan skip_all => 'the XS backend is not built (perl Makefile.PL && make): '
    . ($@ =~ s/\n.*//sr);
}

my $X = 'PAGI::Server::Protocol::HTTP1::XS';
sub xs ($fn, @args) { $X->can($fn)->(@args) }
my @L = (16384, 100, 8192);
my $GET = "GET /caf%C3%A9?q=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n";

subtest 'interface' => sub {
  can_ok($X, qw(parse_request decode_chunked serialize_response check_headers serialize_chunk
    serialize_trailers connection_info));
  is($X->VERSION, PAGI::Server::Protocol::HTTP1::XS->VERSION, 'has a version');
  ok(!defined &main::parse_request, 'exports nothing');
};

subtest 'a Rust panic is a croak, and the codec still works after it' => sub {
  is(xs('_debug_panic', -3), -3, 'no panic: the value comes back');
  for (1 .. 3) {
    my $ok = eval { xs('_debug_panic', 7); 1 };
    ok(!$ok, 'a panic croaks');
    like($@, qr/\APAGI::Server::Protocol::HTTP1::XS::_debug_panic: internal error in the Rust codec \(pagi_debug_panic\(7\) called at src\/ffi\.rs:\d+\); please report this bug at /,
      '... naming the function, the panic message and the place');
  }
  my ($r, $n) = xs('parse_request', $GET, @L);
  is($n, length $GET, 'parse_request works after panics');
};

subtest 'odd Perl values as input' => sub {
  is_deeply([xs('parse_request', undef, @L)], [undef, 0], 'undef buffer: need more bytes');
  is_deeply([xs('parse_request', 12345, @L)], [undef, 0], 'a number is its digits');
  my ($r) = xs('parse_request', {}, @L);
  is($r->{error}, 'bad_request_line', 'a reference is its string (HASH(0x...)): "(" is no method byte');
  my $big = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  ($r) = xs('parse_request', $big, '100', '10', '50');
  is($r->{method}, 'GET', 'limits as strings');
  ($r) = xs('parse_request', $big, 1e9, 1e9, 1e9);
  is($r->{method}, 'GET', 'limits as floats');

  my $wide = "GET /\x{263A} HTTP/1.1\r\n\r\n";
  ok(!eval { xs('parse_request', $wide, @L); 1 }, 'a buffer with a wide character croaks');
  like($@, qr/parse_request: the buffer must be bytes/, '... saying so');
  ok(!eval { xs('decode_chunked', "\x{100}", -1, 10); 1 }, 'decode_chunked too');
  like($@, qr/decode_chunked: the buffer must be bytes/, '... saying so');
  my $up = $GET;
  utf8::upgrade($up);
  is_deeply([xs('parse_request', $up, @L)], [xs('parse_request', $GET, @L)],
    'an upgraded buffer of bytes is its bytes');

  # Tied (magic) buffer: FETCH is called
  {
    package Tied { sub TIESCALAR { bless [$_[1]] } sub FETCH { $_[0][0] } }
    tie my $t, 'Tied', $GET;
    my (undef, $n) = xs('parse_request', $t, @L);
    is($n, length $GET, 'a tied buffer');
  }

  # Overloaded objects as header name/value stringify
  {
    package Str { use overload '""' => sub { ${$_[0]} }, fallback => 1; sub new { my $s = $_[1]; bless \$s } }
    my ($b) = xs('serialize_response', 200, [[Str->new('X-O'), Str->new('v')]], 0, '');
    like($b, qr/\r\nX-O: v\r\n/, 'overloaded name and value');
    my (undef, $msg) = xs('serialize_response', 200, [[Str->new('bad name'), 'v']], 0, '');
    is($msg, 'invalid header name: bad name', '... and in the error message');
  }

  # Malformed header lists are API misuse: croak naming the function
  for my $bad ({}, 'x', [1], [{}]) {
    ok(!eval { xs('serialize_response', 200, $bad, 0, ''); 1 }, 'malformed headers croak');
    like($@, qr/serialize_response: header/, '... naming the function');
  }
  # check_headers: the same conversions and the same misuse rules
  is(xs('check_headers', [[Str->new('Content-Length'), Str->new('12')]]), undef, 'check_headers: overloaded name and value');
  is(xs('check_headers', [['Content-Length', Str->new('1 2')]]), 'invalid content-length: 1 2',
    '... and the value as given in the message');
  {
    tie my $t, 'Tied', 'x9';
    is(xs('check_headers', [['Content-Length', $t]]), 'invalid content-length: x9', 'a tied value');
  }
  is(xs('check_headers', undef), undef, 'check_headers(undef): no headers');
  # ... except the shape: check_headers answers it (the start send fails with it)
  my $shape = 'headers must be an array of [name, value] pairs';
  for my $bad ({}, 'x', [1], [{}], [[]], [['a', 'b', 'c']], [['Content-Length', 'x'], 'y']) {
    is(xs('check_headers', $bad), $shape, 'check_headers: a bad shape is answered, first');
  }
  {
    package TiedList {
      sub TIEARRAY  { my ($class, @v) = @_; bless [@v], $class }
      sub FETCH     { $_[0][$_[1]] }
      sub FETCHSIZE { scalar @{$_[0]} }
    }
    tie my @pairs, 'TiedList', ['X-A', '1'], ['X-B'];
    is(xs('check_headers', \@pairs), $shape, 'a tied list: its elements are read through the tie');
  }
  my @many = ((map { ["X-$_", $_] } 1 .. 100), ['Content-Length', '1'], ['content-length', '2']);
  is(xs('check_headers', \@many), 'conflicting content-length', '100 headers (off the stack), then a conflict');
  # A body (or chunk) with a character above 0xFF is misuse
  ok(!eval { xs('serialize_response', 200, [], 0, "\x{100}"); 1 }, 'a wide body croaks');
  like($@, qr/serialize_response: the body must be bytes/, '... naming the function');
  ok(!eval { xs('serialize_response', 'bad', {}, 0, "\x{100}"); 1 }, '... before any other error');
  ok(!eval { xs('serialize_chunk', "\x{100}"); 1 }, 'a wide chunk croaks');
  like($@, qr/serialize_chunk: the body must be bytes/, '... naming the function');
  {
    tie my $t, 'Tied', "caf\x{e9}";
    my @r = xs('serialize_response', 200, [], 0, $t);
    is($r[3], 4, 'a tied body: its length');
    like($r[0], qr/\r\n\r\ncaf\xe9\z/, '... and its bytes');
  }
  {
    my $up = "\xe9t\xe9";
    utf8::upgrade($up);
    my @r = xs('serialize_response', 200, [], 0, $up);
    ok(!utf8::is_utf8($r[0]), 'an upgraded body comes out as bytes');
    is(substr($r[0], -3), "\xe9t\xe9", '... the same characters');
    is(xs('serialize_chunk', $up), "3\r\n\xe9t\xe9\r\n", 'an upgraded chunk: its bytes');
  }

  is_deeply([xs('serialize_trailers', [[]])], [undef, 'invalid header name: '],
    'trailers: an empty pair is an empty (invalid) name');
  ok(!eval { xs('serialize_trailers', {}); 1 }, 'trailers: a hash croaks');
  like($@, qr/serialize_trailers: headers must be an array reference/, '... naming the function');
  # ... but an earlier app error wins, as in the PP code
  my @r = xs('serialize_response', 'x', {}, 0, '');
  is_deeply(\@r, [undef, 'invalid status'], 'an invalid status is reported before malformed headers');
  @r = xs('serialize_response', 200, [['bad name', 1], 'x'], 0, '');
  is_deeply(\@r, [undef, 'invalid header name: bad name'], 'so is an earlier invalid header');

  is(xs('connection_info', undef), undef, 'connection_info(undef)');
  is(xs('connection_info', -1), undef, 'connection_info(-1)');
  {
    no warnings 'numeric';
    my $info = PAGI::Server::Protocol::HTTP1::XS::connection_info('abc');
    ok(!defined $info || ref $info eq 'ARRAY', 'connection_info("abc") is about fd 0, no crash');
  }
};

subtest 'results are ordinary, independent, writable scalars' => sub {
  my ($r) = xs('parse_request', $GET, @L);
  my ($r2) = xs('parse_request', $GET, @L);
  $r->{method} .= 'X';
  $r->{http_version} =~ s/1/9/;
  $r->{headers}[0][0] = uc $r->{headers}[0][0];
  $r->{query_string} .= '&more';
  substr($r->{raw_path}, 0, 1, '#');
  $r->{upgrade} = 'set';
  $_ = 'x' for $r->{sse}, $r->{content_length};
  is($r->{method}, 'GETX', 'method');
  is($r->{http_version}, '9.1', 'http_version');
  is($r->{headers}[0][0], 'HOST', 'a known header name');
  is($r2->{method}, 'GET', 'the other result is untouched');
  is($r2->{http_version}, '1.1', '... its version too');
  is($r2->{headers}[0][0], 'host', '... and its header name');
  my ($r3) = xs('parse_request', $GET, @L);
  is_deeply($r3, $r2, 'a new result is as before');
  ok(utf8::is_utf8($r3->{path}) && $r3->{path} eq "/caf\x{e9}", 'path is characters');
  ok(!utf8::is_utf8($r3->{raw_path}), 'raw_path is bytes');
  is($r3->{headers}[2][1], 'a=1; b=2', 'cookies merged');
  my ($e1) = xs('parse_request', "BAD\r\n", @L);
  $e1->{error} = 'changed';
  my ($e2) = xs('parse_request', "BAD\r\n", @L);
  is($e2->{error}, 'bad_request_line', 'error hashes are independent');
  my ($bytes) = xs('serialize_response', 200, [], 0, 'x');
  $bytes =~ s/OK/KO/;
  my ($again) = xs('serialize_response', 200, [], 0, 'x');
  like($again, qr/\AHTTP\/1\.1 200 OK\r\n/, 'serialized bytes are a fresh string');
};

subtest 'large inputs' => sub {
  my $huge = 'A' x 10_000_000;
  my ($r) = xs('parse_request', $huge, @L);
  is($r->{error}, 'uri_too_long', '10 MB without a line end: uri_too_long');
  ($r) = xs('parse_request', "GET / HTTP/1.1\r\nHost: a\r\nX: " . ('v' x 10_000_000), @L);
  is($r->{error}, 'headers_too_large', '10 MB head: headers_too_large');
  my $many = "GET / HTTP/1.1\r\nHost: a\r\n" . join('', map "X-$_: $_\r\n", 1 .. 50_000) . "\r\n";
  ($r) = xs('parse_request', $many, 1e8, 1e6, 8192);
  is(scalar @{$r->{headers}}, 50_001, '50 001 headers under big limits');
  is($r->{headers}[-1][1], 50_000, '... the last one');

  my $body = join '', map { sprintf("%x\r\n", 65536) . ('b' x 65536) . "\r\n" } 1 .. 16;
  my ($data, $n, $state) = xs('decode_chunked', $body . "0\r\n\r\n", -1, 1024);
  is(length $data, 16 * 65536, '1 MiB of chunked data');
  is($state, -4, '... to the end');
  ($data, $n, $state) = xs('decode_chunked', 'x' x 5_000_000, 5_000_000, 1024);
  is(length $data, 5_000_000, '5 MB of one chunk\'s data');

  my ($bytes, $mode) = xs('serialize_response', 200, [], 0, 'z' x 10_000_000);
  like($bytes, qr/\r\nContent-Length: 10000000\r\n/, '10 MB body: its length');
  is(length($bytes) - index($bytes, "\r\n\r\n") - 4, 10_000_000, '... and all of it');
  my $chunk = xs('serialize_chunk', 'c' x 1_000_000);
  is(substr($chunk, 0, 7), "f4240\r\n", '1 MB chunk');
  my @headers = map { ["X-$_", $_] } 1 .. 1000;
  ($bytes) = xs('serialize_response', 200, \@headers, 0, '');
  like($bytes, qr/\r\nX-1000: 1000\r\n/, '1000 app headers');
  my @r = xs('serialize_response', 200, [@headers, ['bad name', 1]], 0, '');
  is($r[1], 'invalid header name: bad name', '... the error after 1000 good ones');
};

subtest 'the Date header' => sub {
  my ($b) = xs('serialize_response', 200, [], 0, '');
  my ($date) = $b =~ /\r\nDate: ([^\r]+)\r\n/;
  my @now = gmtime;
  my @day = qw(Sun Mon Tue Wed Thu Fri Sat);
  my @mon = qw(Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec);
  like($date, qr/\A$day[$now[6]], \d\d $mon[$now[4]] @{[$now[5] + 1900]} \d\d:\d\d:\d\d GMT\z/,
    "IMF-fixdate of now ($date)");
  my ($b2) = xs('serialize_response', 200, [['Date', 'mine']], 0, '');
  like($b2, qr/\r\nDate: mine\r\n/, "the app's own Date");
  unlike($b2, qr/GMT/, '... instead of the server\'s');
};

subtest 'threads (the per-interpreter caches are remade for each)' => sub {
  plan skip_all => 'perl without ithreads' unless $Config{useithreads};
  require threads;
  my ($want) = xs('parse_request', $GET, @L);
  my @got = map { $_->join } map {
    threads->create(sub {
      my ($r) = PAGI::Server::Protocol::HTTP1::XS::parse_request($GET, @L);
      my ($b) = PAGI::Server::Protocol::HTTP1::XS::serialize_response(200, [['X', 1]], 0, 'hi');
      return [$r, $b =~ s/\r\nDate: [^\r]*//r];
    })
  } 1 .. 2;
  is_deeply($_->[0], $want, 'a thread parses the same') for @got;
  like($_->[1], qr/\AHTTP\/1\.1 200 OK\r\nX: 1\r\n/, 'and serializes') for @got;
  my ($after) = xs('parse_request', $GET, @L);
  is_deeply($after, $want, 'the main interpreter still works');
  # A compression context is not copied into a new thread (the copy would free the
  # Rust one twice); the thread makes its own, the parent's goes on
  require PAGI::Server::Protocol::WebSocket::XS;
  my $ctx = PAGI::Server::Protocol::WebSocket::XS::new_deflate({});
  my $first = $ctx->compress_message('Hello');
  my ($in_thread) = threads->create(sub {
    my $mine = PAGI::Server::Protocol::WebSocket::XS::new_deflate({});
    # (CLONE_SKIP: the thread's copy is an unblessed reference to undef)
    return [ref $ctx eq ref $mine ? 'copied' : 'not copied', $mine->decompress_message($mine->compress_message('hi'), 10)];
  })->join;
  is_deeply($in_thread, ['not copied', 'hi'], 'a thread gets no copy of a compression context, and makes its own');
  is(PAGI::Server::Protocol::WebSocket::XS::new_deflate({})->decompress_message($first . '', 10), 'Hello',
    'the parent\'s context still works');
  ok(length $ctx->compress_message('Hello') < length $first, '... with its window');
};

subtest 'no leaks' => sub {
  plan skip_all => 'no /proc/self/statm' unless -r '/proc/self/statm';
  my $rss = sub { open my $f, '<', '/proc/self/statm' or die; (split ' ', <$f>)[1] * 4 };
  require PAGI::Server::Protocol::WebSocket::XS;
  my $W = 'PAGI::Server::Protocol::WebSocket::XS';
  my $frame = "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";
  my $run = sub {
    for (1 .. 20_000) {
      my ($f) = $W->can('parse_frame')->($frame, 1000);
      my ($we) = $W->can('parse_frame')->("\x81\x05", 1000);
      my $bf = $W->can('build_frame')->(1, 'hello', 1);
      my $u = $W->can('utf8_check')->("caf\xc3\xa9");
      my $m = $W->can('mask_payload')->('payload', 'abcd');
      eval { $W->can('build_frame')->(1, "\x{100}", 1) };
      my ($r) = xs('parse_request', $GET, @L);
      my ($e) = xs('parse_request', "GET  / HTTP/1.1\r\n", @L);
      my ($d) = xs('decode_chunked', "3\r\nabc\r\n0\r\n\r\n", -1, 100);
      my ($b) = xs('serialize_response', 200, [['A', 1], ['B', 2]], 0, 'body');
      my (undef, $msg) = xs('serialize_response', 200, [['A B', 1]], 0, 'body');
      my $h = xs('check_headers', [['A', 1], ['Content-Length', 'x']]);
      my $ok = xs('check_headers', [['A', 1], ['Content-Length', '3']]);
      eval { xs('serialize_chunk', "\x{100}") };
      my $c = xs('serialize_chunk', 'chunk');
      my ($t) = xs('serialize_trailers', [['T', 1]]);
      eval { xs('_debug_panic', 1) };
      my $z = $W->can('new_deflate')->({});
      my $p = $z->compress_message('a compressible message, a compressible message');
      my $m = $z->decompress_message($p, 1000);
      my $e = $z->decompress_message("\x07", 1000);
      eval { $z->compress_message("\x{100}") };
    }
  };
  $run->();
  my $before = $rss->();
  $run->() for 1 .. 3;
  my $grew = $rss->() - $before;
  cmp_ok($grew, '<', 2048, "RSS grew by $grew KiB over 60 000 rounds of every function");
};

done_testing;
