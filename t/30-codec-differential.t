use v5.32;
use warnings;
use experimental 'signatures';
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use File::Temp qw(tempdir);
use IO::Socket::IP;
use IO::Socket::UNIX;
use Socket qw(AF_UNIX SOCK_STREAM PF_UNSPEC);
use PAGI::Test::Differential qw(backends run_both same tally_ok @FAILS %WARNINGS);
use PAGI::Test::CodecCorpus qw(requests bad_requests limit_sets chunked_bodies responses
  chunk_datas trailer_sets mutate canon strip_date);

# The two HTTP/1.1 codec backends must give identical results (doc/codec.md): this feeds
# one corpus (valid requests, every malformed class, every split point, a seeded random
# mutation run) to ::PP and ::XS and compares everything, error kinds, messages, undef vs
# "" vs 0 and the path's UTF-8 flag included. Only the Date value may differ.

BEGIN {
  eval { require PAGI::Server::Protocol::HTTP1::XS; 1 }
    or plan skip_all => 'the XS backend is not built (perl Makefile.PL && make): '
    . ($@ =~ s/\n.*//sr);
}
require PAGI::Server::Protocol::HTTP1::PP;

my %IMPL = (pp => 'PAGI::Server::Protocol::HTTP1::PP', xs => 'PAGI::Server::Protocol::HTTP1::XS');
backends(%IMPL);
my $SEED = $ENV{PAGI_TEST_SEED} // 20261127;
my $MUTATIONS = $ENV{PAGI_TEST_MUTATIONS} // 12_000;

subtest 'interface' => sub {
  for my $fn (qw(parse_request decode_chunked serialize_response check_headers serialize_chunk
    serialize_trailers connection_info set_server_header)) {
    ok($IMPL{$_}->can($fn), "$IMPL{$_} can $fn") for qw(pp xs);
  }
  is(PAGI::Server::Protocol::HTTP1::XS->VERSION, PAGI::Server::Protocol::HTTP1::PP->VERSION,
    'same version');
};

subtest 'reason phrases: every status 100-999' => sub {
  my $n = 0;
  for my $status (100 .. 999) {
    $n++;
    same("status $status", 'serialize_response', [$status, [], 0, ''], flags => 0, post => \&strip_date);
  }
  tally_ok($n, 'status lines');
  no warnings 'once';
  is(PAGI::Server::Protocol::HTTP1::XS::_reason_phrase($_), $PAGI::Server::Protocol::HTTP1::PP::REASON{$_} // '',
    "reason $_") for 100, 200, 413, 414, 418, 422, 599;
};

subtest 'error kinds: one table' => sub {
  # Rust's table (through XS) is the generated Perl one, which PP and the facade read
  my @rows = PAGI::Server::Protocol::HTTP1::XS::_error_table('http');
  is_deeply({map { $_->[0] => [$_->[2], $_->[1]] } @rows}, \%PAGI::Server::Protocol::Errors::HTTP,
    'the Rust table is PAGI::Server::Protocol::Errors::HTTP: kinds, statuses, messages');
  is(PAGI::Server::Protocol::HTTP1::error_status($_->[0]), $_->[2], "error_status($_->[0])") for @rows;
  ok(!eval { PAGI::Server::Protocol::HTTP1::XS::_error_table('other'); 1 }, 'an unknown table croaks');
  my %xs = map { $_->[0] => $_->[1] } @rows;
  is(scalar keys %xs, 12, 'twelve kinds');
  # Each kind's message as the PP code gives it
  my %pp;
  for my $kind (sort keys %xs) {
    my ($e) = PAGI::Server::Protocol::HTTP1::PP::_error($kind);
    $pp{$kind} = $e->{message};
  }
  is_deeply(\%xs, \%pp, 'kinds and messages');
  # The application misuse the codecs report: the same table, and both backends build
  # their messages from it
  my @app = PAGI::Server::Protocol::HTTP1::XS::_error_table('app');
  is_deeply({map { $_->[0] => [$_->[2], $_->[1]] } @app}, \%PAGI::Server::Protocol::Errors::APP,
    'the Rust app table is PAGI::Server::Protocol::Errors::APP');
};

my @valid = requests();
my @invalid = bad_requests();
my @limits = limit_sets();

subtest 'parse_request: corpus under every limit set' => sub {
  for my $e (@valid, @invalid) {
    my ($name, $bytes) = @$e;
    my ($pp, $xs) = ('', '');
    for my $l (@limits) {
      my ($p, $x) = run_both('parse_request', [$bytes, @$l]);
      $pp .= "@$l: $p\n";
      $xs .= "@$l: $x\n";
    }
    is($xs, $pp, $name);
  }
  # The valid ones are complete; the corpus reaches every parser error kind
  my %kinds;
  for my $e (@invalid) {
    my ($r) = PAGI::Server::Protocol::HTTP1::XS::parse_request($e->[1], 16384, 100, 8192);
    $kinds{$r->{error}}++ if ref $r && $r->{error};
  }
  for my $e (@valid) {
    my ($r) = PAGI::Server::Protocol::HTTP1::XS::parse_request($e->[1], 16384, 100, 8192);
    ok(ref $r && !$r->{error}, "valid: $e->[0]");
  }
  is_deeply([sort keys %kinds], [sort qw(bad_request_line bad_header bad_host bad_content_length
    conflicting_length bad_transfer_encoding uri_too_long headers_too_large
    unsupported_transfer_encoding unsupported_version)], 'every parser error kind is covered');
};

subtest 'parse_request: every split point' => sub {
  my $n = 0;
  for my $e (@valid, @invalid) {
    my ($name, $bytes) = @$e;
    for my $cut (0 .. length $bytes) {
      for my $l ($limits[0], $limits[1]) {
        $n++;
        same("$name, first $cut bytes, limits @$l", 'parse_request', [substr($bytes, 0, $cut), @$l]);
      }
    }
  }
  tally_ok($n, 'prefixes');
};

subtest 'parse_request: long and odd inputs' => sub {
  my $long_utf8 = "GET /" . ('%C3%A9' x 20_000) . " HTTP/1.1\r\nHost: a\r\n\r\n";
  same('20k percent-encoded UTF-8 characters', 'parse_request', [$long_utf8, 1e6, 100, 1e6]);
  same('undef buffer', 'parse_request', [undef, 16384, 100, 8192]);
  same('empty buffer', 'parse_request', ['', 16384, 100, 8192]);
  my $upgraded = "GET /\xE9 HTTP/1.1\r\nHost: a\r\n\r\n";
  utf8::upgrade($upgraded);
  # (characters compared: PP's substrings keep the buffer's internal upgrade)
  same('an upgraded buffer of bytes', 'parse_request', [$upgraded, 16384, 100, 8192], flags => 0);
  same('limits as strings', 'parse_request', ["GET / HTTP/1.1\r\nHost: a\r\n\r\n", '30', '1', '20']);
  my $many = "GET / HTTP/1.1\r\nHost: a\r\n" . join('', map "X-$_: $_\r\n", 1 .. 3000) . "\r\n";
  same('3000 headers', 'parse_request', [$many, 1e6, 5000, 8192]);
  # Long multibyte paths: the UTF-8 decision on the whole of them
  my @long = (
    ['20k raw 4-byte characters', "\xF0\x9F\x98\x80" x 20_000],
    ['20k encoded 4-byte characters', '%F0%9F%98%80' x 20_000],
    ['20k 3-byte characters, then a surrogate', ("\xE2\x82\xAC" x 20_000) . '%ED%B0%80'],
    ['20k 2-byte characters, then a truncated one', ("\xC3\xA9" x 20_000) . '%E2%82'],
    ['over U+10FFFF, then 20k 2-byte characters', '%F4%90%80%80' . ("\xC3\xA9" x 20_000)],
    ['20k mixed characters, then an overlong', join('', map { ("a", "\xC3\xA9", "%E2%82%AC", "\xF0\x9F\x98\x80")[$_ % 4] } 1 .. 20_000) . '%C0%80'],
    ['20k mixed characters, valid', join('', map { ("a", "\xC3\xA9", "%E2%82%AC", "\xF0\x9F\x98\x80")[$_ % 4] } 1 .. 20_000)],
    ['100k latin-1 bytes', "\xE9" x 100_000],
  );
  for my $l (@long) {
    same($l->[0], 'parse_request', ["GET /$l->[1]?q HTTP/1.1\r\nHost: a\r\n\r\n", 1e7, 100, 1e7]);
  }
  tally_ok(6 + @long, 'long and odd inputs');
};

subtest 'parse_request: the path UTF-8 decision on every short sequence' => sub {
  # Interesting bytes around every boundary of RFC 3629's table (and perl's extended
  # lead bytes F8-FF): every sequence of 1-3 of them, and 4-byte ones after F0-FF
  my @b = (0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xE1,
    0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xF7, 0xF8, 0xFB, 0xFC, 0xFD, 0xFE, 0xFF);
  my @c = (0x80, 0x8F, 0x90, 0xBF, 0x41, 0xC2);
  my @seqs = map { [$_] } @b;
  for my $x (@b) {
    for my $y (@b) { push @seqs, [$x, $y], map { [$x, $y, $_] } @b }
  }
  for my $x (0xF0 .. 0xFF) {
    for my $y (@c) { for my $z (@c) { push @seqs, map { [$x, $y, $z, $_] } @c } }
  }
  my ($n, $chars) = (0, 0);
  for my $seq (@seqs) {
    my $enc = join '', map { sprintf '%%%02X', $_ } @$seq;
    # encoded, and raw where the bytes may appear in a target
    for my $path ($enc, (grep { $_ < 0x21 || $_ == 0x7F } @$seq) ? () : join('', map chr, @$seq)) {
      $n++;
      same("path /$path", 'parse_request', ["GET /$path HTTP/1.1\r\nHost: a\r\n\r\n", 16384, 100, 8192]);
    }
    my ($r) = PAGI::Server::Protocol::HTTP1::XS::parse_request("GET /$enc HTTP/1.1\r\nHost: a\r\n\r\n", 16384, 100, 8192);
    $chars++ if utf8::is_utf8($r->{path});
  }
  tally_ok($n, 'sequences');
  note("$chars of " . @seqs . ' sequences decode to characters');
  ok($chars > 400 && $chars < @seqs / 2, 'both outcomes are represented');
};

subtest "decode_chunked's states: the facade's names are Rust's numbers" => sub {
  use PAGI::Server::Protocol::HTTP1;
  my %state = (
    PAGI::Server::Protocol::HTTP1::CHUNK_DATA_END() => ["5\r\nhello", PAGI::Server::Protocol::HTTP1::CHUNK_SIZE()],
    PAGI::Server::Protocol::HTTP1::CHUNK_TRAILER()  => ["0\r\n", PAGI::Server::Protocol::HTTP1::CHUNK_SIZE()],
    PAGI::Server::Protocol::HTTP1::CHUNK_DONE()     => ["\r\n", PAGI::Server::Protocol::HTTP1::CHUNK_TRAILER()],
    PAGI::Server::Protocol::HTTP1::CHUNK_SIZE()     => ["\r\n", PAGI::Server::Protocol::HTTP1::CHUNK_DATA_END()],
  );
  for my $want (sort keys %state) {
    my ($buf, $from) = @{$state{$want}};
    for my $b (qw(xs pp)) {
      my (undef, undef, $got) = $IMPL{$b}->can('decode_chunked')->($buf, $from, 100);
      is($got, $want, "$b: from $from, " . canon($buf) . " reaches $want");
    }
  }
};

# Decodes a whole body the way the connection does: append what arrives, decode, drop
# what was consumed. Returns the trace of every call.
sub feed ($impl, $body, $cuts, $state = PAGI::Server::Protocol::HTTP1::CHUNK_SIZE, $max = 16384) {
  my ($buf, @trace, $pos) = ('');
  my @pieces;
  my $from = 0;
  for my $cut (@$cuts, length $body) {
    push @pieces, substr($body, $from, $cut - $from);
    $from = $cut;
  }
  for my $piece (@pieces) {
    $buf .= $piece;
    my @r = $IMPL{$impl}->can('decode_chunked')->($buf, $state, $max);
    push @trace, \@r;
    last if ref $r[0];
    substr($buf, 0, $r[1], '');
    $state = $r[2];
  }
  return canon([\@trace, $buf]);
}

subtest 'decode_chunked: corpus, every state, every split point, byte by byte' => sub {
  my @bodies = chunked_bodies();
  my $n = 0;
  for my $e (@bodies) {
    my ($name, $body) = @$e;
    for my $state (-1, -2, -3, -4, 0, 1, 5, 100, -7) {
      for my $max (16384, 1000, 21, 20, 0) {
        $n++;
        same("$name, state $state, max $max", 'decode_chunked', [$body, $state, $max]);
      }
    }
    for my $cut (0 .. length $body) {
      $n += 2;
      same("$name, prefix $cut", 'decode_chunked', [substr($body, 0, $cut), -1, 16384]);
      my ($pp, $xs) = (feed('pp', $body, [$cut]), feed('xs', $body, [$cut]));
      push @FAILS, "$name, fed in two at $cut\n  pp: $pp\n  xs: $xs" if $pp ne $xs;
    }
    if (length $body < 600) {
      $n++;
      my @every = 1 .. length($body) - 1;
      my ($pp, $xs) = (feed('pp', $body, \@every), feed('xs', $body, \@every));
      push @FAILS, "$name, byte by byte\n  pp: $pp\n  xs: $xs" if $pp ne $xs;
    }
  }
  tally_ok($n, 'decode_chunked');
};

subtest 'serialize_response, serialize_chunk, serialize_trailers' => sub {
  for my $e (responses()) {
    my ($name, @args) = @$e;
    ok(same($name, 'serialize_response', \@args, flags => 0, post => \&strip_date), "serialize_response: $name")
      or diag(pop @FAILS);
  }
  # check_headers given a status (a response head's): the status first, serialize_response's rule
  for my $status (200, '200', 100, 999, 99, 1000, '20', '2000', ' 200', '200 ', "200\n", 'abc', undef, '', 0, 1e3, '০২০') {
    for my $headers ([], [['X', "a\nb"]], 'x') {
      ok(same('status ' . canon([$status]), 'check_headers', [$headers, $status], flags => 0),
        'check_headers(' . canon([$headers, $status]) . ')') or diag(pop @FAILS);
    }
  }
  # The Server field the codec adds, set the same in both (each backend keeps its own)
  for my $value ('PAGI::Server/0.001', '', undef, "x\x{e9}") {
    my ($pp, $xs) = run_both('set_server_header', [$value]);
    is($xs, $pp, 'set_server_header(' . canon([$value]) . ')');
    ok(same("Server $_", 'serialize_response', [200, $_ ? [['Server', 'app']] : [], 0, 'b'], flags => 0,
      post => \&strip_date), 'serialize_response after set_server_header(' . canon([$value]) . ')' . ($_ ? ', the app\'s own' : ''))
      or diag(pop @FAILS) for 0, 1;
  }
  for my $bad ("a\nb", "a\0", "\x{263a}") {
    my ($pp, $xs) = run_both('set_server_header', [$bad]);
    is_deeply([$pp, $xs], ['DIED', 'DIED'], 'set_server_header(' . canon([$bad]) . '): both croak');
  }
  # check_headers gives exactly the message serialize_response gives for the same headers
  for my $e (responses(), map { [$_->[0], 200, $_->[1]] } trailer_sets()) {
    my ($name, undef, $headers) = @$e;
    ok(same($name, 'check_headers', [$headers], flags => 0), "check_headers: $name") or diag(pop @FAILS);
    my $r = PAGI::Server::Protocol::HTTP1::PP::check_headers($headers);
    my @s = eval { PAGI::Server::Protocol::HTTP1::PP::serialize_response(200, $headers, 0, '') };
    is($r, defined $s[0] ? undef : $s[1], "check_headers is serialize_response's verdict: $name") if @s;
  }
  for my $e (chunk_datas()) {
    my ($name, @args) = @$e;
    ok(same($name, 'serialize_chunk', \@args, flags => 0), "serialize_chunk: $name") or diag(pop @FAILS);
  }
  for my $e (trailer_sets()) {
    my ($name, @args) = @$e;
    ok(same($name, 'serialize_trailers', \@args, flags => 0), "serialize_trailers: $name")
      or diag(pop @FAILS);
  }
  # A bad shape is misuse for serialize_response: it dies in both (the messages
  # differ: that is not peer input)
  for my $bad ({}, [1], [{}], 'x') {
    my ($pp, $xs) = run_both('serialize_response', [200, $bad, 0, '']);
    is($xs, $pp, 'malformed headers ' . canon($bad) . ': both die');
  }
  # check_headers, which the connection calls first, answers any bad shape with one
  # message in both, before it looks at a name or a value
  my $shape = canon(['headers must be an array of [name, value] pairs']);
  for my $bad ({}, [1], [{}], 'x', [['a']], [['a', 1, 2]], [[]], [undef],
    [['bad name', 1], 'x'], [['Content-Length', 'x'], {}], [['X', 1], ['Y']]) {
    my ($pp, $xs) = run_both('check_headers', [$bad]);
    is($pp, $shape, 'check_headers ' . canon($bad) . ': the shape message (PP)');
    is($xs, $pp, '... the same in XS');
  }
  my ($pp_undef, $xs_undef) = run_both('check_headers', [undef]);
  is($pp_undef, canon([undef]), 'check_headers: undef is no headers (PP)');
  is($xs_undef, $pp_undef, '... the same in XS');
  # The Date line is the same shape in both, and present unless the app sent one
  my ($pp) = PAGI::Server::Protocol::HTTP1::PP::serialize_response(200, [], 0, '');
  my ($xs) = PAGI::Server::Protocol::HTTP1::XS::serialize_response(200, [], 0, '');
  isnt(strip_date($xs), $xs, 'XS sends a well-formed Date');
  isnt(strip_date($pp), $pp, 'PP sends a well-formed Date');
};

subtest "random response headers (seed $SEED)" => sub {
  srand $SEED;
  my @names = ('Content-Length', 'content-length', 'CONTENT-LENGTH', 'Connection', 'Transfer-Encoding',
    'Date', 'Server', 'X-A', 'bad name', '', 'Content-Lengthx');
  my @values = ('0', '5', '05', '6', '999999999999999999', '1000000000000000000', '', ' 5', '5 ',
    '-5', 'x', 'close', 'keep-alive, close', "a\r\nb", "\0", "\xFF", "\x{100}", undef, 5, 5.0, 0.5);
  my ($n, %kinds) = (0);
  for my $i (1 .. 3000) {
    my @h = map { [$names[rand @names], $values[rand @values]] } 1 .. int rand 5;
    # mutate a value now and then
    $_->[1] = mutate($_->[1] // '') for grep { rand() < 0.2 && !utf8::is_utf8($_->[1] // '') } @h;
    my $status = (200, 200, 204, 304, 101, '404', 'x')[rand 7];
    my $flags = int rand 8;
    my $body = (undef, '', 'hello', "\x{e9}t\x{e9}")[rand 4];
    $n += 2;
    same("case $i: " . canon([$status, \@h, $flags, $body]), 'serialize_response', [$status, \@h, $flags, $body],
      flags => 0, post => \&strip_date);
    same("case $i: check_headers " . canon(\@h), 'check_headers', [\@h], flags => 0);
    my ($r) = PAGI::Server::Protocol::HTTP1::XS::check_headers(\@h);
    $kinds{defined $r ? $r =~ s/(?:: | for ).*//sr : 'ok'}++;
  }
  tally_ok($n, "seed $SEED");
  note(join ', ', map "$_: $kinds{$_}", sort keys %kinds);
  is(scalar keys %kinds, 5, 'every verdict of check_headers is reached');
};

subtest "random mutations (seed $SEED, $MUTATIONS cases)" => sub {
  srand $SEED;
  my @sources = (@valid, @invalid);
  my @bodies = chunked_bodies();
  my ($n, %kinds) = (0);
  for my $i (1 .. $MUTATIONS) {
    my $e = $sources[rand @sources];
    my $bytes = mutate($e->[1]);
    my $l = rand() < 0.6 ? $limits[0] : $limits[rand @limits];
    $n++;
    same("case $i: mutated '$e->[0]' " . canon($bytes) . " limits @$l", 'parse_request', [$bytes, @$l]);
    my ($r) = PAGI::Server::Protocol::HTTP1::XS::parse_request($bytes, @$l);
    $kinds{ref $r ? ($r->{error} // 'complete') : 'partial'}++;

    my $b = $bodies[rand @bodies];
    my $body = mutate($b->[1]);
    my $state = (-1, -1, -1, -2, -3, -4, 1, 3, 7)[rand 9];
    my $max = (16384, 16384, 40, 5)[rand 4];
    $n++;
    same("case $i: mutated '$b->[0]' " . canon($body) . " state $state max $max", 'decode_chunked',
      [$body, $state, $max]);
  }
  tally_ok($n, "seed $SEED");
  note(join ', ', map "$_: $kinds{$_}", sort keys %kinds);
  ok(keys %kinds >= 10, 'the mutations reach complete, partial and most error kinds');
};

subtest 'connection_info' => sub {
  socketpair(my $a, my $b, AF_UNIX, SOCK_STREAM, PF_UNSPEC) or die "socketpair: $!";
  ok(same('socketpair', 'connection_info', [fileno $a]), 'socketpair') or diag(pop @FAILS);

  my $l4 = IO::Socket::IP->new(LocalHost => '127.0.0.1', LocalPort => 0, Listen => 5) or die $!;
  my $c4 = IO::Socket::IP->new(PeerHost => '127.0.0.1', PeerPort => $l4->sockport) or die $!;
  my $s4 = $l4->accept or die $!;
  ok(same('tcp v4, server side', 'connection_info', [fileno $s4]), 'tcp v4, server side') or diag(pop @FAILS);
  ok(same('tcp v4, client side', 'connection_info', [fileno $c4]), 'tcp v4, client side') or diag(pop @FAILS);
  ok(same('listening socket', 'connection_info', [fileno $l4]), 'listening socket: undef') or diag(pop @FAILS);

  SKIP: {
    my $l6 = IO::Socket::IP->new(LocalHost => '::', LocalPort => 0, Listen => 5, V6Only => 0)
      or skip 'no IPv6', 2;
    if (my $c6 = IO::Socket::IP->new(PeerHost => '::1', PeerPort => $l6->sockport)) {
      my $s6 = $l6->accept;
      ok(same('tcp v6', 'connection_info', [fileno $s6]), 'tcp v6') or diag(pop @FAILS);
    }
    else { pass('no ::1') }
    if (my $c = IO::Socket::IP->new(PeerHost => '127.0.0.1', PeerPort => $l6->sockport)) {
      my $s = $l6->accept;
      ok(same('v4-mapped', 'connection_info', [fileno $s]), 'IPv4-mapped IPv6') or diag(pop @FAILS);
    }
    else { pass('no dual stack') }
  }

  my $dir = tempdir(CLEANUP => 1);
  my $lu = IO::Socket::UNIX->new(Local => "$dir/s", Listen => 1) or die $!;
  my $cu = IO::Socket::UNIX->new(Peer => "$dir/s") or die $!;
  my $su = $lu->accept or die $!;
  ok(same('unix, server side', 'connection_info', [fileno $su]), 'unix path, server side') or diag(pop @FAILS);
  ok(same('unix, client side', 'connection_info', [fileno $cu]), 'unix path, client side') or diag(pop @FAILS);

  open my $null, '<', '/dev/null' or die $!;
  ok(same('not a socket', 'connection_info', [fileno $null]), 'not a socket: undef') or diag(pop @FAILS);
  ok(same('closed descriptor', 'connection_info', [999]), 'closed descriptor: undef') or diag(pop @FAILS);
};

is($WARNINGS{xs}, 0, 'the XS backend never warned');
note("the PP backend warned $WARNINGS{pp} times") if $WARNINGS{pp};

done_testing;
