use v5.32;
use warnings;
use experimental 'signatures';
use Test::More;
use PAGI::Server::Protocol::WebSocket;

# permessage-deflate (RFC 7692) below the connection, on the active backend
# (doc/codec.md, "permessage-deflate"): negotiate_deflate on the RFC's examples and on
# every way an offer is declined; the compression context's round trips, context
# takeover and its absence, fragmented messages, the size limit while inflating (a
# bomb), corrupt streams; and the RSV1 rules of parse_frame and build_frame, the way
# the connection will use them. t/32 compares the two backends.

my $WS = 'PAGI::Server::Protocol::WebSocket';
my $IMPL = $PAGI::Server::Protocol::WebSocket::IMPLEMENTATION;
note("backend: $IMPL");

sub negotiate ($values, %settings) { [PAGI::Server::Protocol::WebSocket::negotiate_deflate($values, {%settings})] }

# The response value alone (undef: declined), with the RFC's own server defaults
sub answer ($values, %settings) { negotiate($values, server_max_window_bits => 15, %settings)->[1] }

subtest 'negotiation: RFC 7692 examples (7.1.3, 5)' => sub {
  is(answer(['permessage-deflate']), 'permessage-deflate', 'a bare offer');
  is(answer(['permessage-deflate; client_max_window_bits']), 'permessage-deflate',
    'client_max_window_bits without a value: nothing to answer');
  is(answer(['permessage-deflate; client_max_window_bits; server_max_window_bits=10, permessage-deflate; client_max_window_bits']),
    'permessage-deflate; server_max_window_bits=10', 'two offers: the first is acceptable, so it wins');
  is(answer(['permessage-deflate; server_max_window_bits=10']), 'permessage-deflate; server_max_window_bits=10',
    'server_max_window_bits is answered with the same value');
  is(answer(['permessage-deflate; server_no_context_takeover']), 'permessage-deflate; server_no_context_takeover',
    'server_no_context_takeover is answered');
  is(answer(['permessage-deflate; client_no_context_takeover']), 'permessage-deflate; client_no_context_takeover',
    'client_no_context_takeover is answered');
  is(answer(['permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; client_max_window_bits=9']),
    'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9',
    'everything at once');
  is_deeply(negotiate(['permessage-deflate; server_max_window_bits=10; client_max_window_bits=11'], level => 3, mem_level => 7),
    [{server_no_context_takeover => 0, client_no_context_takeover => 0, server_max_window_bits => 10,
      client_max_window_bits => 11, level => 3, mem_level => 7},
     'permessage-deflate; server_max_window_bits=10'], 'the agreed parameters: what new_deflate takes');
};

subtest 'negotiation: several fields, several offers, the first acceptable wins' => sub {
  is(answer(['x-webkit-deflate-frame', 'permessage-deflate; server_max_window_bits=11']),
    'permessage-deflate; server_max_window_bits=11', 'another extension first, in its own field');
  is(answer(['permessage-deflate; foo=1', 'permessage-deflate; server_max_window_bits=12']),
    'permessage-deflate; server_max_window_bits=12', 'the first field\'s offer is declined, the second field\'s wins');
  is(answer(['permessage-deflate; server_max_window_bits=8, permessage-deflate; server_max_window_bits=9, permessage-deflate']),
    'permessage-deflate; server_max_window_bits=9', 'declined (8), then accepted (9): the third is not looked at');
  is(answer(['foo, bar; baz="a, b; c", permessage-deflate; client_no_context_takeover']),
    'permessage-deflate; client_no_context_takeover', 'commas and semicolons inside a quoted string of another offer');
  is(answer(['', ' , ,permessage-deflate , ']), 'permessage-deflate', 'empty fields and empty list elements');
  is(answer([]), undef, 'no field: declined');
  is(answer(['x-webkit-deflate-frame', 'deflate-frame']), undef, 'only other extensions');
  is(answer(['Permessage-Deflate']), undef, 'the extension name is matched exactly');
  is(answer(['permessage-deflate;client_max_window_bits=10 ;server_max_window_bits = 11']),
    'permessage-deflate; server_max_window_bits=11', 'white space around ";" and "="');
};

subtest 'negotiation: quoted-string values (RFC 6455 9.1)' => sub {
  is(answer(['permessage-deflate; server_max_window_bits="10"']), 'permessage-deflate; server_max_window_bits=10',
    'a quoted value');
  is(answer(['permessage-deflate; server_max_window_bits="1\\0"']), 'permessage-deflate; server_max_window_bits=10',
    'a quoted-pair is unescaped first');
  is(answer(['permessage-deflate; client_max_window_bits="10"']), 'permessage-deflate', 'client_max_window_bits quoted');
  for my $bad ('"1 0"', '""', '"10', '"ten"', '"10\\"') {
    is(answer(["permessage-deflate; server_max_window_bits=$bad, permessage-deflate"]),
      $bad eq '"10' || $bad eq '"10\\"' ? undef : 'permessage-deflate',
      "server_max_window_bits=$bad: declined" . ($bad =~ /^"10/ ? ', and the field stops parsing' : ''));
  }
};

subtest 'negotiation: declined offers' => sub {
  my @declined = (
    ['unknown parameter', 'permessage-deflate; foo'],
    ['unknown parameter with a value', 'permessage-deflate; foo=bar'],
    ['a response-only spelling', 'permessage-deflate; max_window_bits=10'],
    ['duplicate server_max_window_bits', 'permessage-deflate; server_max_window_bits=10; server_max_window_bits=10'],
    ['duplicate client_max_window_bits', 'permessage-deflate; client_max_window_bits; client_max_window_bits'],
    ['duplicate server_no_context_takeover', 'permessage-deflate; server_no_context_takeover; server_no_context_takeover'],
    ['duplicate client_no_context_takeover', 'permessage-deflate; client_no_context_takeover; client_no_context_takeover'],
    ['server_no_context_takeover with a value', 'permessage-deflate; server_no_context_takeover=1'],
    ['client_no_context_takeover with a value', 'permessage-deflate; client_no_context_takeover="x"'],
    ['server_max_window_bits without a value', 'permessage-deflate; server_max_window_bits'],
    ['server_max_window_bits=8 (zlib cannot deflate with a 256-byte window)', 'permessage-deflate; server_max_window_bits=8'],
    (map { ["server_max_window_bits=$_", "permessage-deflate; server_max_window_bits=$_"] } 0, 7, 16, 99, '08', '010', '1e1', '-9', 'x'),
    (map { ["client_max_window_bits=$_", "permessage-deflate; client_max_window_bits=$_"] } 0, 7, 16, '09', '+9', 'ten'),
  );
  for my $d (@declined) {
    my ($name, $offer) = @$d;
    is_deeply(negotiate([$offer]), [undef, undef], "declined: $name");
    is(answer(["$offer, permessage-deflate; client_no_context_takeover"]), 'permessage-deflate; client_no_context_takeover',
      "... and the next offer is looked at");
  }
  # client_max_window_bits=8 is the client's own window: fine (our inflater is larger)
  is(answer(['permessage-deflate; client_max_window_bits=8']), 'permessage-deflate', 'client_max_window_bits=8 is accepted');
  is(negotiate(['permessage-deflate; client_max_window_bits=8'])->[0]{client_max_window_bits}, 8, '... and recorded');
  # A field that does not parse gives the offers before the fault only
  is(answer(['permessage-deflate; server_max_window_bits=, permessage-deflate']), undef, 'a missing value');
  is(answer(['permessage-deflate; client_max_window_bits=10, permessage-deflate; a=', 'permessage-deflate']),
    'permessage-deflate', 'an accepted offer before a fault');
  is(answer(['permessage-deflate; =10']), undef, 'a value without a name');
  is(answer(['permessage-deflate client_no_context_takeover']), undef, 'a missing ";"');
  is(answer(["permessage-deflate; a=\x{e9}"]), undef, 'a character outside of token');
};

subtest 'negotiation: the server\'s settings' => sub {
  is_deeply(negotiate(['permessage-deflate'], enabled => 0), [undef, undef], 'disabled: declined');
  is(negotiate(['permessage-deflate'])->[1], 'permessage-deflate; server_max_window_bits=12',
    'by default a 4 KiB window, announced (RFC 7692 7.1.2.1 allows it unasked)');
  is(answer(['permessage-deflate; server_max_window_bits=14'], server_max_window_bits => 11),
    'permessage-deflate; server_max_window_bits=11', 'a smaller window than offered');
  is(answer(['permessage-deflate; server_max_window_bits=10'], server_max_window_bits => 11),
    'permessage-deflate; server_max_window_bits=10', 'the offer\'s when it is smaller');
  is(answer(['permessage-deflate'], server_no_context_takeover => 1), 'permessage-deflate; server_no_context_takeover',
    'server_no_context_takeover unasked');
  is(negotiate(['permessage-deflate'], server_no_context_takeover => 1)->[0]{server_no_context_takeover}, 1, '... agreed');
  is(answer(['permessage-deflate'], client_no_context_takeover => 1), 'permessage-deflate; client_no_context_takeover',
    'client_no_context_takeover unasked (the server imposes it)');
  is(negotiate(['permessage-deflate'], client_no_context_takeover => 1)->[0]{client_no_context_takeover}, 1, '... agreed');
  for my $bad ([server_max_window_bits => 8], [server_max_window_bits => 16], [level => 10], [level => -1],
    [mem_level => 0], [mem_level => 10], [level => 'x'], [nonsense => 1]) {
    eval { PAGI::Server::Protocol::WebSocket::negotiate_deflate(['permessage-deflate'], {@$bad}) };
    like($@, qr/\Anegotiate_deflate: /, "misuse croaks: @$bad");
  }
  eval { PAGI::Server::Protocol::WebSocket::negotiate_deflate('permessage-deflate', {}) };
  like($@, qr/header values must be an array reference/, 'misuse croaks: a string for the list');
  is(answer([undef, 'permessage-deflate']), 'permessage-deflate', 'an undef value is skipped');
};

# ---- the compression context ------------------------------------------------------

sub ctx (%p) { PAGI::Server::Protocol::WebSocket::new_deflate({%p}) }

sub json_message ($i) {
  my @w = qw(alpha beta gamma delta room user hello world status online typing chat);
  return qq({"type":"message","id":$i,"room":"room@{[$i % 5]}","user":{"id":@{[1000 + $i % 37]},"status":"online"},)
    . qq("text":") . join(' ', map { $w[($i * 7 + $_ * 3) % @w] } 1 .. 120) . qq(","ts":@{[1700000000 + $i]}});
}

sub noise ($len, $seed) {
  my $x = $seed * 2654435761 % 4294967296 || 1;
  return join '', map { $x = ($x * 1103515245 + 12345) % 2147483648; chr($x >> 16 & 255) } 1 .. $len;
}

sub hexes ($s) { pack 'H*', $s =~ s/\s+//gr }

# A message in frames, as the connection feeds them: the bytes, or the error kind
sub inflate_frames ($c, $max, @frames) {
  my $all = '';
  for my $i (0 .. $#frames) {
    my $r = $c->decompress_message($frames[$i], $max, $i == $#frames ? 1 : 0);
    return $r->{error} if ref $r;
    $all .= $r;
  }
  return $all;
}

subtest 'the context: new_deflate and its methods' => sub {
  my $c = ctx();
  isa_ok($c, $PAGI::Server::Protocol::WebSocket::DEFLATE_CLASS);
  can_ok($c, @PAGI::Server::Protocol::WebSocket::DEFLATE_METHODS);
  for my $bad ([server_max_window_bits => 8], [level => 10], [mem_level => 0], [client_max_window_bits => 7], [foo => 1]) {
    eval { ctx(@$bad) };
    like($@, qr/\Anew_deflate: /, "misuse croaks: @$bad");
  }
  eval { $c->compress_message("\x{263a}") };
  like($@, qr/must be bytes/, 'a message with characters croaks');
  eval { $c->decompress_message("\x{263a}", 100) };
  like($@, qr/must be bytes/, 'a payload with characters croaks');
  my $up = "caf\xe9";
  utf8::upgrade($up);
  is(ctx()->decompress_message(ctx()->compress_message($up), 100), "caf\xe9", 'an upgraded string of bytes is its bytes');
  is(ctx()->decompress_message(ctx()->compress_message(undef), 100), '', 'undef is the empty message');
};

subtest 'the context: RFC 7692 7.2.3 examples' => sub {
  my %w15 = (server_max_window_bits => 15);
  my $tx = ctx(%w15);
  is(unpack('H*', $tx->compress_message('Hello')), 'f248cdc9c90700', '"Hello" (7.2.3.1)');
  is(unpack('H*', $tx->compress_message('Hello')), 'f200110000', 'again, with the LZ77 window (7.2.3.2)');
  my $once = ctx(%w15, server_no_context_takeover => 1);
  is(unpack('H*', $once->compress_message('Hello')), 'f248cdc9c90700', 'server_no_context_takeover') for 1 .. 2;
  my $rx = ctx();
  is($rx->decompress_message(hexes('f2 48 cd c9 c9 07 00'), 100), 'Hello', 'inflated (7.2.3.1)');
  is($rx->decompress_message(hexes('f2 00 11 00 00'), 100), 'Hello', 'with the window (7.2.3.2)');
  is(inflate_frames(ctx(), 100, hexes('f2 48 cd'), hexes('c9 c9 07 00')), 'Hello', 'in two frames (7.2.3.1)');
  is(ctx()->decompress_message(hexes('00 05 00 fa ff 48 65 6c 6c 6f 00'), 100), 'Hello', 'a stored block (7.2.3.3)');
  my $bfinal = ctx();
  is($bfinal->decompress_message(hexes('f3 48 cd c9 c9 07 00 00'), 100), 'Hello', 'a block with BFINAL (7.2.3.4)');
  is($bfinal->decompress_message(hexes('f2 48 cd c9 c9 07 00'), 100), 'Hello', '... then a new stream');
  is(ctx()->decompress_message(hexes('f2 48 05 00 00 00 ff ff ca c9 c9 07 00'), 100), 'Hello', 'two blocks (7.2.3.5)');
  is(inflate_frames(ctx(), 100, hexes('f2 48 cd c9 c9 07 00 00 00 ff ff'), ''), 'Hello', 'an empty last frame (7.2.3.6)');
  is(unpack('H*', ctx()->compress_message('')), '00', 'the empty message is one 0x00 octet');
  my $after = ctx();
  $after->compress_message('Hello');
  is(unpack('H*', $after->compress_message('')), '00', '... also right after another message');
  is(ctx()->decompress_message("\0", 0), '', '... and inflates to nothing');
};

subtest 'the context: round trips' => sub {
  my @messages = ((map { json_message($_) } 1 .. 30), '', 'x', noise(3000, 1), 'a' x 100_000, noise(70_000, 2),
    json_message(7) x 300);
  my $n = 0;
  for my $p ({}, {server_max_window_bits => 15, mem_level => 8}, {level => 0}, {level => 1}, {level => 9},
    {server_max_window_bits => 9, mem_level => 1}, {server_no_context_takeover => 1, client_no_context_takeover => 1}) {
    my ($tx, $rx) = (ctx(%$p), ctx(%$p));
    my $ok = 0;
    for my $m (@messages) {
      my $z = $tx->compress_message($m);
      $ok++ if $rx->decompress_message($z, 1 << 30) eq $m;
      $ok++ if !($p->{server_no_context_takeover}) || ctx(%$p)->decompress_message($z, 1 << 30) eq $m;
    }
    is($ok, 2 * @messages, 'every message, in order' . join('', map { ", $_ $p->{$_}" } sort keys %$p));
  }
  # JSON shrinks; noise does not grow by much
  my $tx = ctx();
  my ($in, $out) = (0, 0);
  for (1 .. 50) { my $m = json_message($_); $in += length $m; $out += length $tx->compress_message($m) }
  cmp_ok($out, '<', $in / 3, "chat-like JSON shrinks: $in bytes to $out");
  cmp_ok(length ctx()->compress_message(noise(10_000, 3)), '<', 10_100, 'noise grows by a few bytes at most');
};

subtest 'the context: takeover, or not' => sub {
  my $tx = ctx();
  my $first = $tx->compress_message('the same words, the same words');
  my $second = $tx->compress_message('the same words, the same words');
  cmp_ok(length $second, '<', length $first, 'the second refers to the first');
  is(ctx()->decompress_message($second, 100)->{error}, 'bad_deflate', 'alone it is corrupt (a distance before the start)');
  my $rx = ctx();
  $rx->decompress_message($first, 100);
  is($rx->decompress_message($second, 100), 'the same words, the same words', 'after the first it inflates');
  my $strict = ctx(client_no_context_takeover => 1);
  $strict->decompress_message($first, 100);
  is($strict->decompress_message($second, 100)->{error}, 'bad_deflate',
    'client_no_context_takeover: the inflater forgets, so a client that took over anyway is caught');
  # Without takeover a direction's stream goes, reset, to spares that every context
  # takes from: nothing of one context's messages shows in another's
  my %none = (server_no_context_takeover => 1, client_no_context_takeover => 1);
  my ($one, $two) = (ctx(%none), ctx(%none));
  $one->compress_message('the same words, the same words') for 1 .. 2;
  is($two->compress_message('the same words, the same words'), $first, 'a spare deflater starts anew');
  $one->decompress_message($first, 100);
  is($two->decompress_message($second, 100)->{error}, 'bad_deflate', 'a spare inflater starts anew');
  # Two messages received in frames at once: each context holds its own inflater
  my @z = map { ctx()->compress_message($_) } 'the first message, the first', 'the second message, the second';
  my ($c1, $c2) = (ctx(%none), ctx(%none));
  my $got1 = $c1->decompress_message(substr($z[0], 0, 6), 100, 0);
  my $got2 = $c2->decompress_message(substr($z[1], 0, 6), 100, 0);
  $got1 .= $c1->decompress_message(substr($z[0], 6), 100, 1);
  $got2 .= $c2->decompress_message(substr($z[1], 6), 100, 1);
  is_deeply([$got1, $got2], ['the first message, the first', 'the second message, the second'],
    'two messages in frames at once');
};

subtest 'the context: fragmented messages' => sub {
  my $tx = ctx();
  my @messages = (json_message(1), json_message(2), noise(2000, 4), 'z' x 5000);
  my @z = map { $tx->compress_message($_) } @messages;
  my ($ok, $n) = (0, 0);
  for my $k (0 .. $#z) {
    for my $cut (0 .. length $z[$k]) {
      my $rx = ctx();
      $rx->decompress_message($z[$_], 1 << 20) for 0 .. $k - 1;
      $n++;
      $ok++ if inflate_frames($rx, 1 << 20, substr($z[$k], 0, $cut), substr($z[$k], $cut)) eq $messages[$k];
    }
  }
  is($ok, $n, "every cut in two ($n)");
  my $rx = ctx();
  my $all = 1;
  for my $k (0 .. $#z) {
    my $z = $z[$k];
    my @frames = ('', map { substr($z, $_ * 7, 7) } 0 .. length($z) / 7);
    $all &&= inflate_frames($rx, 1 << 20, @frames) eq $messages[$k];
  }
  ok($all, 'seven bytes a frame, an empty first frame, the context carried from message to message');
};

subtest 'the context: the size limit while inflating' => sub {
  my $m = noise(5000, 5);
  my $z = ctx()->compress_message($m);
  is(ctx()->decompress_message($z, 5000), $m, 'a message of exactly the limit');
  is(ctx()->decompress_message($z, 4999)->{error}, 'inflated_too_large', 'one byte over');
  is(ctx()->decompress_message($z, 4999.5)->{error}, 'inflated_too_large', 'a fraction over');
  is(ctx()->decompress_message($z, 5000.5), $m, 'a fraction under');
  my $half = int(length($z) / 2);
  is(inflate_frames(ctx(), 5000, substr($z, 0, $half), substr($z, $half)), $m, 'the limit is the whole message\'s');
  is(inflate_frames(ctx(), 4999, substr($z, 0, $half), substr($z, $half)), 'inflated_too_large', '... over its frames');
  my ($tx, $rx) = (ctx(), ctx());
  is(join(',', map { length $rx->decompress_message($tx->compress_message($m), 5000) } 1 .. 5), '5000,5000,5000,5000,5000',
    '... and starts again with each message');
  is(ctx()->decompress_message("\0", -1)->{error}, 'inflated_too_large', 'a negative limit refuses even the empty message');
  my $e = ctx()->decompress_message($z, 10);
  is_deeply($e, {error => 'inflated_too_large', message => $PAGI::Server::Protocol::Errors::WS{inflated_too_large}[1]},
    'the error: kind and message from the table');
  is($PAGI::Server::Protocol::WebSocket::ERROR_CLOSE{inflated_too_large}, 1009, '... closed with 1009');
};

subtest 'the context: a bomb stops at the limit' => sub {
  # 64 MiB of zeros in a few dozen KiB: stopped right after 1 MiB, fast, not buffered
  my $bomb = ctx(level => 9)->compress_message("\0" x (64 << 20));
  cmp_ok(length $bomb, '<', 100_000, 'the bomb: ' . length($bomb) . ' bytes');
  my $rx = ctx();
  my $t = time;
  is($rx->decompress_message($bomb, 1 << 20)->{error}, 'inflated_too_large', 'one frame: too large');
  cmp_ok(time - $t, '<=', 2, '... at once');
  is($rx->decompress_message("\0", 1 << 20)->{error}, 'inflated_too_large', 'the context stays broken');
  my $frames = ctx();
  my ($got, $i) = (0, 0);
  for my $f (unpack '(a500)*', $bomb) {
    my $r = $frames->decompress_message($f, 1 << 22, 0);
    if (ref $r) { is($r->{error}, 'inflated_too_large', "in frames: stopped at frame $i"); last }
    $got += length $r;
    $i++;
  }
  cmp_ok($got, '<=', 1 << 22, "... having handed out at most the limit ($got bytes)");
  SKIP: {
    skip 'no /proc/self/statm', 1 unless -r '/proc/self/statm';
    my $rss = sub { open my $f, '<', '/proc/self/statm' or die; (split ' ', <$f>)[1] * 4096 };
    my $before = $rss->();
    ctx()->decompress_message($bomb, 1 << 20) for 1 .. 3;
    cmp_ok($rss->() - $before, '<', 32 << 20, 'memory stays near the limit, not the bomb\'s size');
  }
};

subtest 'the context: corrupt streams' => sub {
  for my $c (['reserved block type', '07'], ['reserved block type, BFINAL', 'ff'],
    ['stored lengths that disagree', '00 05 00 00 00'], ['NLEN off by one', '01 00'],
    ['a bad code lengths set', '05 e0 ff ff ff ff'], ['a distance before the start (7.2.3.2 alone)', 'f2 00 11 00 00']) {
    my $r = ctx()->decompress_message(hexes($c->[1]), 1 << 20);
    is(ref $r && $r->{error}, 'bad_deflate', $c->[0]);
  }
  is($PAGI::Server::Protocol::WebSocket::ERROR_CLOSE{bad_deflate}, 1007, 'closed with 1007');
  my $rx = ctx();
  is($rx->decompress_message(hexes('f2 48 05 00 00 00 ff ff'), 100, 0), 'He', 'a good first frame');
  is($rx->decompress_message(hexes('07'), 100, 1)->{error}, 'bad_deflate', 'a corrupt second frame');
  is($rx->decompress_message(hexes('f2 48 cd c9 c9 07 00'), 100)->{error}, 'bad_deflate', 'then the context stays broken');
  my $z = ctx()->compress_message(noise(3000, 6)) . "\x07";
  is(ctx()->decompress_message($z, 100)->{error}, 'inflated_too_large', 'too much output before the fault: too large');
  is(ctx()->decompress_message($z, 1 << 20)->{error}, 'bad_deflate', 'the fault before the limit: corrupt');
  my $died = 0;
  srand 13;
  for (1 .. 300) {
    my $junk = join '', map { chr int rand 256 } 1 .. rand 200;
    eval { ctx()->decompress_message($junk, 1 << 16, int rand 2); 1 } or $died++;
  }
  is($died, 0, 'random bytes never die');
};

# ---- frames: RSV1, the way the connection will use it ----------------------------

sub client_frame ($b0, $payload) {
  my $key = "\x37\xfa\x21\x3d";
  my $len = length $payload;
  my $head = $len < 126 ? pack('CC', $b0, 0x80 | $len) : pack('CCn', $b0, 0xfe, $len);
  return $head . $key . PAGI::Server::Protocol::WebSocket::mask_payload($payload, $key);
}

subtest 'frames: RSV1 with and without the extension' => sub {
  my $z = hexes('f2 48 cd c9 c9 07 00');
  my ($f, $n) = PAGI::Server::Protocol::WebSocket::parse_frame(client_frame(0xc1, $z), 1000, 1);
  is_deeply($f, [1, 1, $z, 1], 'a compressed text frame: RSV1 returned');
  is(ctx()->decompress_message($f->[2], 1000, $f->[0]), 'Hello', '... and inflated');
  ($f) = PAGI::Server::Protocol::WebSocket::parse_frame(client_frame(0xc1, $z), 1000);
  is($f->{error}, 'rsv_bits', 'RSV1 without the extension: rsv_bits');
  is($PAGI::Server::Protocol::WebSocket::ERROR_CLOSE{rsv_bits}, 1002, '... 1002');
  ($f) = PAGI::Server::Protocol::WebSocket::parse_frame(client_frame(0x81, 'Hello'), 1000, 1);
  is_deeply($f, [1, 1, 'Hello', 0], 'an uncompressed message with the extension: RSV1 clear');
  for my $b0 (0x40, 0xc0, 0xc8, 0xc9, 0xca) {
    ($f) = PAGI::Server::Protocol::WebSocket::parse_frame(client_frame($b0, ''), 1000, 1);
    is($f->{error}, 'bad_rsv1', sprintf('RSV1 on opcode %d: bad_rsv1', $b0 & 15));
  }
  is($PAGI::Server::Protocol::WebSocket::ERROR_CLOSE{bad_rsv1}, 1002, '... 1002');
  for my $b0 (0xe1, 0xd1, 0xa1, 0x91) {
    ($f) = PAGI::Server::Protocol::WebSocket::parse_frame(client_frame($b0, 'x'), 1000, 1);
    is($f->{error}, 'rsv_bits', sprintf('byte 0 %#x: RSV2 or RSV3 stay rsv_bits', $b0));
  }
  # A fragmented compressed message: RSV1 on the first frame only
  my $big = json_message(3) . noise(500, 7) . json_message(4);
  my $zz = ctx()->compress_message($big);
  my $third = int(length($zz) / 3);
  my $wire = client_frame(0x41, substr($zz, 0, $third)) . client_frame(0x00, substr($zz, $third, $third))
    . client_frame(0x80, substr($zz, 2 * $third));
  my ($rx, @rsv, $msg) = (ctx());
  while (length $wire) {
    my ($fr, $used) = PAGI::Server::Protocol::WebSocket::parse_frame($wire, 1 << 20, 1);
    substr($wire, 0, $used, '');
    push @rsv, $fr->[3];
    $msg .= $rx->decompress_message($fr->[2], 1 << 20, $fr->[0]);
  }
  is("@rsv", '1 0 0', 'RSV1 on the first of three frames');
  is($msg, $big, 'the message, inflated frame by frame');
  # build_frame: the server's compressed message
  is(PAGI::Server::Protocol::WebSocket::build_frame(1, $z, 1, 1), "\xc1\x07$z", 'build_frame with RSV1');
  is(PAGI::Server::Protocol::WebSocket::build_frame(1, 'Hello', 1), "\x81\x05Hello", 'and without, as before');
};

done_testing;
