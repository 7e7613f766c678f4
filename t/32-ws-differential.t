use v5.32;
use warnings;
use experimental 'signatures';
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use File::Temp qw(tempdir);
use PAGI::Test::Differential qw(backends run_both same tally_ok @FAILS %WARNINGS);
use PAGI::Test::CodecCorpus qw(canon mutate);
use Digest::SHA ();

# The two WebSocket codec backends must give identical results (doc/codec.md, WebSocket
# part): valid frames of every opcode and length encoding, masked and not, RSV1 allowed
# and not, every error kind, every split point, every first two bytes, a seeded random
# mutation run, build_frame over many lengths, mask_payload, utf8_check over a UTF-8
# corpus (also fed fragment by fragment the way the connection feeds it), and
# permessage-deflate: the same inflated bytes or error kinds from the same compressed
# frames (both compressors' output, split every way, under limits around their size,
# and mutated), and each backend inflating the other's compressed messages. The
# compressed bytes themselves are not compared (both backends run zlib, but not
# necessarily the same build of it).

BEGIN {
  eval { require PAGI::Server::Protocol::WebSocket::XS; 1 }
    or plan skip_all => 'the XS WebSocket codec is not built (perl Makefile.PL && make): '
    . ($@ =~ s/\n.*//sr);
}
require PAGI::Server::Protocol::WebSocket::PP;
require PAGI::Server::Protocol::WebSocket;

my %IMPL = (pp => 'PAGI::Server::Protocol::WebSocket::PP', xs => 'PAGI::Server::Protocol::WebSocket::XS');
backends(%IMPL);
my $SEED = $ENV{PAGI_TEST_SEED} // 20261127;
my $MUTATIONS = $ENV{PAGI_TEST_WS_MUTATIONS} // 20_000;

sub short ($bytes) { length $bytes > 40 ? canon(substr($bytes, 0, 40)) . '...(' . length($bytes) . ' bytes)' : canon($bytes) }

# A client frame: byte 0 (FIN, RSV, opcode), MASK bit, the length in the encoding asked
# for (7, 16 or 64 bits: minimal when not given), the key and the masked payload
sub frame (%o) {
  my $payload = $o{payload} // '';
  my $len = $o{len} // length $payload;
  my $b0 = (($o{fin} // 1) ? 0x80 : 0) | ($o{rsv} // 0) << 4 | ($o{opcode} // 1);
  my $mask = ($o{masked} // 1) ? 0x80 : 0;
  my $enc = $o{enc} // ($len < 126 ? 7 : $len < 65536 ? 16 : 64);
  my $head = $enc == 7 ? pack('CC', $b0, $mask | $len)
    : $enc == 16 ? pack('CCn', $b0, $mask | 126, $len)
    : pack('CCNN', $b0, $mask | 127, int($len / 4294967296), $len % 4294967296);
  my $key = $o{key} // "\x37\xfa\x21\x3d";
  return $head . ($mask ? $key . PAGI::Server::Protocol::WebSocket::PP::mask_payload($payload, $key) : $payload);
}

subtest 'interface' => sub {
  for my $fn (qw(parse_frame build_frame utf8_check mask_payload new_deflate)) {
    ok($IMPL{$_}->can($fn), "$IMPL{$_} can $fn") for qw(pp xs);
  }
  for my $m (@PAGI::Server::Protocol::WebSocket::DEFLATE_METHODS) {
    ok("$IMPL{$_}::Deflate"->can($m), "$IMPL{$_}::Deflate can $m") for qw(pp xs);
  }
  is(PAGI::Server::Protocol::WebSocket::XS->VERSION, PAGI::Server::Protocol::WebSocket::PP->VERSION, 'same version');
  no warnings 'once';
  is_deeply(\@PAGI::Server::Protocol::WebSocket::XS::FUNCTIONS, \@PAGI::Server::Protocol::WebSocket::FUNCTIONS,
    'the XS module lists the facade\'s functions');
  # One table: Rust's (through XS) is the generated Perl one, which PP and the facade read
  my @rows = PAGI::Server::Protocol::HTTP1::XS::_error_table('ws');
  my %xs = map { $_->[0] => $_->[1] } @rows;
  my %pp = map { my ($e) = PAGI::Server::Protocol::WebSocket::PP::_error($_); ($_ => $e->{message}) } keys %xs;
  is(scalar keys %xs, 9, 'nine error kinds');
  is_deeply(\%xs, \%pp, 'the same kinds and messages');
  is_deeply({map { $_->[0] => [$_->[2], $_->[1]] } @rows}, \%PAGI::Server::Protocol::Errors::WS,
    'the Rust table is PAGI::Server::Protocol::Errors::WS: kinds, close codes, messages');
  is_deeply({map { $_->[0] => $_->[2] } @rows}, \%PAGI::Server::Protocol::WebSocket::ERROR_CLOSE,
    'every kind has its close code in the facade');
};

# Valid frames: every opcode, FIN set and clear (data frames), every length encoding
# (minimal and not), lengths around each boundary, several keys, with the next frame's
# first bytes after them
my @PAYLOAD_LENGTHS = (0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 125, 126, 127, 200, 1000, 65535, 65536, 70000);
my @KEYS = ("\x37\xfa\x21\x3d", "\0\0\0\0", "\xff\xff\xff\xff", "\x01\x02\x03\x04");
my @valid;
for my $op (0, 1, 2, 8, 9, 10) {
  for my $len (@PAYLOAD_LENGTHS) {
    next if $op >= 8 && $len > 125;
    my $payload = join '', map { chr(($_ * 31 + $len) % 256) } 1 .. $len;
    for my $fin ($op >= 8 ? (1) : (1, 0)) {
      for my $enc (7, 16, 64) {
        next if $enc == 7 && $len > 125 || $enc == 16 && $len > 65535;
        next if $op >= 8 && $enc != 7;
        my $key = $KEYS[($len + $enc + $op) % @KEYS];
        push @valid, ["op $op, fin $fin, $len bytes, $enc-bit length",
          frame(opcode => $op, fin => $fin, payload => $payload, enc => $enc, key => $key)];
      }
    }
  }
}
# RSV1 on a data message's first frame: rsv_bits unless compression was negotiated
for my $op (1, 2) {
  for my $fin (1, 0) {
    push @valid, map { ["RSV1, op $op, fin $fin, $_ bytes", frame(rsv => 4, opcode => $op, fin => $fin, payload => 'c' x $_)] }
      0, 7, 126, 300;
  }
}
push @valid, ['compressed "Hello" (RFC 7692 7.2.3.1)', "\xc1\x87\x37\xfa\x21\x3d" . PAGI::Server::Protocol::WebSocket::PP::mask_payload("\xf2\x48\xcd\xc9\xc9\x07\x00", "\x37\xfa\x21\x3d")];
push @valid, ['text "Hello" (RFC 6455 5.7)', "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"],
  ['fragmented "Hel" (RFC 6455 5.7)', "\x01\x83\x37\xfa\x21\x3d\x7f\x9f\x4d"],
  ['masked ping "Hello"', "\x89\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"],
  ['close 1000 "bye"', frame(opcode => 8, payload => "\x03\xe8bye")],
  ['UTF-8 text', frame(opcode => 1, payload => "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80")];

# Protocol errors, each by several routes, and the order of the checks
my @invalid = (
  (map { ["RSV bits $_", frame(rsv => $_, payload => 'x')] } 1 .. 7),
  (map { ["RSV1 on opcode $_", frame(rsv => 4, opcode => $_, payload => 'x')] } 0, 8, 9, 10),
  ['RSV1 on a continuation without FIN', frame(rsv => 4, opcode => 0, fin => 0, payload => 'x')],
  ['RSV1 and a reserved opcode', frame(rsv => 4, opcode => 3, payload => 'x')],
  ['RSV1 on a fragmented ping', frame(rsv => 4, opcode => 9, fin => 0)],
  ['RSV1 on an unmasked text', frame(rsv => 4, masked => 0, payload => 'x')],
  (map { ["reserved opcode $_", frame(opcode => $_, payload => 'x')] } 3 .. 7, 11 .. 15),
  ['fragmented ping', frame(opcode => 9, fin => 0)],
  ['fragmented close', frame(opcode => 8, fin => 0, payload => "\x03\xe8")],
  ['ping of 126 bytes (16-bit length)', frame(opcode => 9, payload => 'p' x 126)],
  ['pong with a 7-bit length of 127', frame(opcode => 10, payload => 'p' x 200, enc => 64)],
  ['close with a 16-bit length of 5', frame(opcode => 8, payload => 'abcde', enc => 16)],
  ['unmasked text', frame(masked => 0, payload => 'hello')],
  ['unmasked empty binary', frame(opcode => 2, masked => 0)],
  ['unmasked ping', frame(opcode => 9, masked => 0, payload => 'x')],
  ['64-bit length with the top bit set', "\x82\xff\x80\0\0\0\0\0\0\x01" . "\0" x 4],
  ['64-bit length 2^64-1', "\x82\xff" . ("\xff" x 8) . "\0" x 4],
  ['64-bit length 2^63-1 (too large)', "\x82\xff\x7f" . ("\xff" x 7) . "\0" x 4],
  ['64-bit length 2^32', "\x82\xff\0\0\0\x01\0\0\0\0" . "\0" x 4],
  ['RSV before opcode', "\xf3\x80"],
  ['opcode before control', "\x0b\xfe"],
  ['control before unmasked', "\x09\x7e"],
  ['unmasked before length', "\x82\x7f\x80"],
  ['RSV, fragmented control, unmasked', "\x49\x7f"],
  ['bad length after RSV 0 and a good opcode', "\x80\xff\xff\xff\xff\xff\xff\xff\xff\xff"],
);

# The kinds only a compression context reports (decompress_message)
my %DEFLATE_KINDS = (bad_deflate => 1, inflated_too_large => 1);

# Limits: the payload length against $max_payload (a Perl number, compared with >)
my @MAXES = (1 << 20, 125, 126, 65535, 65536, 5, 0, -1, 4.5, 5.5, -0.5, '7', 1e30, 2**63, 9.3e18);

subtest 'parse_frame: valid frames and errors under every limit' => sub {
  my $n = 0;
  for my $e (@valid, @invalid) {
    my ($name, $bytes) = @$e;
    # (allowing RSV1 changes nothing for a frame without it: checked on the small ones)
    my @rsv1_ok = (ord($bytes) & 0x40 || length $bytes < 2000) ? (0, 1) : (0);
    for my $max (@MAXES) {
      for my $rsv1_ok (@rsv1_ok) {
        $n += 2;
        same("$name, max $max, rsv1_ok $rsv1_ok", 'parse_frame', [$bytes, $max, $rsv1_ok]);
        same("$name + next frame, max $max, rsv1_ok $rsv1_ok", 'parse_frame', [$bytes . "\x81\x80", $max, $rsv1_ok]);
      }
    }
    for my $rsv1_ok (undef, '', 'yes', '0.0') {
      $n++;
      same("$name, rsv1_ok " . canon($rsv1_ok), 'parse_frame', [$bytes, 1 << 20, $rsv1_ok]);
    }
    $n++;
    same("$name, two arguments", 'parse_frame', [$bytes, 1 << 20]);
  }
  tally_ok($n, 'frames');
  # The valid ones parse under the default limit (the compressed ones only when RSV1 is
  # allowed); the invalid ones reach every kind of parse_frame
  my (%kinds, $ok);
  for my $e (@valid) {
    my $compressed = (ord($e->[1]) & 0x40) ? 1 : 0;
    my ($r, $c) = PAGI::Server::Protocol::WebSocket::XS::parse_frame($e->[1], 1 << 20, 1);
    $ok++ if ref $r eq 'ARRAY' && $c == length $e->[1] && $r->[3] == $compressed;
    ($r) = PAGI::Server::Protocol::WebSocket::XS::parse_frame($e->[1], 1 << 20);
    $ok++ if $compressed ? $r->{error} eq 'rsv_bits' : ref $r eq 'ARRAY' && !$r->[3];
  }
  is($ok, 2 * @valid, 'every valid frame parses whole (' . @valid . '), RSV1 when allowed');
  for my $e (@invalid) {
    for my $rsv1_ok (0, 1) {
      my ($r) = PAGI::Server::Protocol::WebSocket::XS::parse_frame($e->[1], 1 << 20, $rsv1_ok);
      $kinds{$r->{error}}++ if ref $r eq 'HASH';
    }
  }
  my ($r) = PAGI::Server::Protocol::WebSocket::XS::parse_frame(frame(payload => 'x' x 10), 9);
  $kinds{$r->{error}}++;
  is_deeply([sort keys %kinds], [sort grep { !$DEFLATE_KINDS{$_} } keys %PAGI::Server::Protocol::WebSocket::ERROR_CLOSE],
    'every error kind of parse_frame is covered');
  # Odd arguments (a limit that is not a number warns in both, as Perl's ">" does, so
  # they are not counted; an upgraded buffer gives the same characters, the payload's
  # UTF-8 flag aside)
  my %w = %WARNINGS;
  for my $args (['', 10], [undef, 10], ["\x81", 10], [frame(payload => 'abc'), undef],
    [frame(payload => 'abc'), 'abc'], [12345, 10], [do { my $u = frame(payload => "\xe9t\xe9"); utf8::upgrade($u); $u }, 10]) {
    same('odd arguments ' . canon($args), 'parse_frame', $args, flags => 0);
  }
  tally_ok(7, 'odd arguments');
  TODO: {
    local $TODO = 'intended divergence (misuse): a buffer with characters over 0xFF croaks in XS;'
      . ' PP reads the characters as bytes of some kind';
    ok(same('a wide buffer', 'parse_frame', ["\x81\x85ab\x{263a}", 10]), 'a buffer with a wide character');
    @FAILS = ();
  }
  %WARNINGS = %w;
};

subtest 'parse_frame: every split point' => sub {
  my $n = 0;
  for my $e (@valid, @invalid) {
    my ($name, $bytes) = @$e;
    next if length $bytes > 2000 && $name !~ /65536 bytes, 64-bit|70000 bytes, 64-bit/;
    my @cuts = length $bytes <= 2000 ? (0 .. length $bytes)
      : ((0 .. 20), map { length($bytes) - $_ } 0 .. 20);
    my $rsv1 = ord($bytes) & 0x40;
    for my $cut (@cuts) {
      $n++;
      same("$name, first $cut bytes", 'parse_frame', [substr($bytes, 0, $cut), 1 << 20]);
      next unless $rsv1;
      $n++;
      same("$name, first $cut bytes, RSV1 allowed", 'parse_frame', [substr($bytes, 0, $cut), 1 << 20, 1]);
    }
  }
  tally_ok($n, 'prefixes');
};

subtest 'parse_frame: every first two bytes' => sub {
  my $n = 0;
  my $tail = "\0\0\0\0\0\0\0\x05" . "\x01\x02\x03\x04" . 'abcde' . ('z' x 200);
  for my $b0 (0 .. 255) {
    for my $b1 (0 .. 255) {
      my $head = pack 'CC', $b0, $b1;
      $n += 2;
      same("bytes $b0 $b1", 'parse_frame', [$head, 1000]);
      same("bytes $b0 $b1 and more", 'parse_frame', [$head . $tail, 100]);
      # (allowing RSV1 only changes what a set RSV1 means)
      next unless $b0 & 0x40;
      $n++;
      same("bytes $b0 $b1 and more, RSV1 allowed", 'parse_frame', [$head . $tail, 100, 1]);
    }
  }
  tally_ok($n, 'first two bytes');
};

subtest "parse_frame: random mutations (seed $SEED, $MUTATIONS cases)" => sub {
  srand $SEED;
  my @sources = grep { length $_->[1] < 2000 } @valid, @invalid;
  my ($n, %kinds) = (0);
  for my $i (1 .. $MUTATIONS) {
    my $e = $sources[rand @sources];
    my $bytes = $e->[1];
    my $how = int rand 4;
    if ($how == 0) {    # flip a bit of the header
      my $pos = int rand(length($bytes) < 14 ? length $bytes : 14);
      substr($bytes, $pos, 1) = chr(ord(substr($bytes, $pos, 1)) ^ (1 << int rand 8)) if length $bytes;
    }
    elsif ($how == 1) { $bytes = mutate($bytes) }
    elsif ($how == 2) {    # two frames, the second mutated
      $bytes .= mutate($sources[rand @sources][1]);
    }
    else {                 # a random header
      $bytes = join('', map { chr int rand 256 } 1 .. 2 + int rand 12) . substr($bytes, 0, int rand 40);
    }
    my $max = (1 << 20, 1 << 20, 125, 126, 0, 10, 65535)[rand 7];
    my $rsv1_ok = int rand 2;
    $n++;
    same("case $i: mutated '$e->[0]' " . short($bytes) . " max $max rsv1_ok $rsv1_ok", 'parse_frame', [$bytes, $max, $rsv1_ok]);
    my ($r) = PAGI::Server::Protocol::WebSocket::XS::parse_frame($bytes, $max, $rsv1_ok);
    $kinds{!defined $r ? 'partial' : ref $r eq 'HASH' ? $r->{error} : 'frame'}++;
  }
  tally_ok($n, "seed $SEED");
  note(join ', ', map "$_: $kinds{$_}", sort keys %kinds);
  is(scalar keys %kinds, 9, 'the mutations reach frames, partial frames and every error kind of parse_frame');
};

subtest 'build_frame: every opcode, FIN, many lengths' => sub {
  my $n = 0;
  for my $len (0 .. 300, 65530 .. 65540, 70000, 1 << 20) {
    my $payload = 'p' x $len;
    for my $op ($len < 200 ? (0 .. 15) : (1, 2)) {
      for my $fin (1, 0) {
        $n += 3;
        same("opcode $op, fin $fin, $len bytes", 'build_frame', [$op, $payload, $fin]);
        same("opcode $op, fin $fin, rsv1, $len bytes", 'build_frame', [$op, $payload, $fin, 1]);
        same("opcode $op, fin $fin, rsv1 0, $len bytes", 'build_frame', [$op, $payload, $fin, 0]);
      }
    }
  }
  my $up = "\xe9t\xe9";
  utf8::upgrade($up);
  for my $args ([1, undef, 1], [1, '', undef], [2, 12345, 1], [1, $up, 1], [1, "\x{263a}", 1],
    [1, 'x', 'yes'], [1, 'x', ''], [1, 'x', '0'], [1, 'x', '0.0'], ['1', 'x', 1], [1.9, 'x', 1],
    [16, 'x', 1], [255, 'x', 0], [0x8f, 'x', 1], [-1, 'x', 0], [1, 'x', 1, 'yes'], [1, 'x', 1, ''],
    [0x41, 'x', 1, 1], [1, 'x', 0, undef]) {
    $n++;
    same('odd arguments ' . canon($args), 'build_frame', $args);
  }
  tally_ok($n, 'build_frame');
  # What a server frame looks like (RFC 6455 5.7)
  is(PAGI::Server::Protocol::WebSocket::XS::build_frame(1, 'Hello', 1), "\x81\x05Hello", 'unmasked "Hello"');
  is(PAGI::Server::Protocol::WebSocket::XS::build_frame(1, 'Hel', 0), "\x01\x03Hel", 'a first fragment');
  is(substr(PAGI::Server::Protocol::WebSocket::XS::build_frame(2, 'x' x 256, 1), 0, 4), "\x82\x7e\x01\x00", '256 bytes: 16-bit length');
  is(substr(PAGI::Server::Protocol::WebSocket::XS::build_frame(2, 'x' x 65536, 1), 0, 10), "\x82\x7f\0\0\0\0\0\x01\0\0", '64 KiB: 64-bit length');
  is(PAGI::Server::Protocol::WebSocket::XS::build_frame(1, "\xf2\x48\xcd\xc9\xc9\x07\x00", 1, 1), "\xc1\x07\xf2\x48\xcd\xc9\xc9\x07\x00",
    'compressed "Hello" (RFC 7692 7.2.3.1): RSV1 set');
};

subtest 'mask_payload and round trips' => sub {
  my $n = 0;
  my $up = "\xe9t\xe9\xff";
  utf8::upgrade($up);
  for my $len (0 .. 40, 100, 1000, 4097) {
    my $payload = join '', map { chr(($_ * 7) % 256) } 1 .. $len;
    for my $key (@KEYS, '', 'a', 'ab', 'abc', 'abcde', 'abcdefgh', undef, 1234) {
      $n++;
      same("$len bytes, key " . canon($key), 'mask_payload', [$payload, $key]);
    }
  }
  for my $args ([undef, 'abcd'], ['', 'abcd'], [$up, 'abcd'], ['abcd', $up], ["\x{263a}", 'abcd'],
    ['abcd', "\x{263a}"], ['', "\x{263a}"], ['12345', 'abcd']) {
    $n++;
    same('odd arguments ' . canon($args), 'mask_payload', $args, flags => 0);
  }
  tally_ok($n, 'mask_payload');
  TODO: {
    local $TODO = 'intended divergence (misuse): PP\'s "^" xors a payload that is a number numerically;'
      . ' XS always takes its bytes';
    ok(same('a number as the payload', 'mask_payload', [12345, 'abcd']), 'a number as the payload');
    @FAILS = ();
  }
  # A client frame made with each backend's mask_payload parses back to its payload
  for my $b (qw(pp xs)) {
    my $ok = 0;
    for my $len (0 .. 300) {
      my $payload = join '', map { chr(($_ * 13 + $len) % 256) } 1 .. $len;
      my $key = pack 'N', $len * 2654435761 % 4294967296;
      my $masked = $IMPL{$b}->can('mask_payload')->($payload, $key);
      my $head = $len < 126 ? pack('CC', 0x82, 0x80 | $len) : pack('CCn', 0x82, 0xfe, $len);
      my ($f2) = PAGI::Server::Protocol::WebSocket::XS::parse_frame($head . $key . $masked, 1000);
      $ok++ if $f2->[2] eq $payload && $IMPL{$b}->can('mask_payload')->($masked, $key) eq $payload;
    }
    is($ok, 301, "$b: mask_payload, then parse_frame or mask_payload again, gives the payload back");
  }
};

# ---- utf8_check ----------------------------------------------------------------------

# Characters at every boundary of RFC 3629's table, and what is not UTF-8
my %VALID = (
  'empty' => '', 'ASCII' => 'Hello, world', 'NUL and DEL' => "\0\x7f",
  'U+0080' => "\xc2\x80", 'U+07FF' => "\xdf\xbf", 'U+0800' => "\xe0\xa0\x80",
  'U+D7FF' => "\xed\x9f\xbf", 'U+E000' => "\xee\x80\x80", 'U+FFFD' => "\xef\xbf\xbd",
  'U+FFFF' => "\xef\xbf\xbf", 'U+FEFF (BOM)' => "\xef\xbb\xbf", 'U+10000' => "\xf0\x90\x80\x80",
  'U+10FFFF' => "\xf4\x8f\xbf\xbf", 'U+FDD0 (noncharacter)' => "\xef\xb7\x90",
  'U+1FFFE (noncharacter)' => "\xf0\x9f\xbf\xbe",
  'mixed text' => "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5",
);
my %INVALID = (
  'lone continuation' => "\x80", 'continuation after ASCII' => "a\xbf",
  'overlong NUL (C0 80)' => "\xc0\x80", 'overlong C1 BF' => "\xc1\xbf",
  'overlong 3-byte (E0 80 80)' => "\xe0\x80\x80", 'overlong 3-byte (E0 9F BF)' => "\xe0\x9f\xbf",
  'overlong 4-byte (F0 80 80 80)' => "\xf0\x80\x80\x80", 'overlong 4-byte (F0 8F BF BF)' => "\xf0\x8f\xbf\xbf",
  'surrogate D800' => "\xed\xa0\x80", 'surrogate DFFF' => "\xed\xbf\xbf",
  'CESU-8 pair' => "\xed\xa0\xbd\xed\xb8\x80", 'U+110000' => "\xf4\x90\x80\x80",
  'F5 lead' => "\xf5\x80\x80\x80", 'F7 BF BF BF' => "\xf7\xbf\xbf\xbf",
  '5-byte form' => "\xf8\x88\x80\x80\x80", '6-byte form' => "\xfc\x84\x80\x80\x80\x80",
  'FE' => "\xfe", 'FF' => "\xff", 'truncated then ASCII' => "\xe2\x82a",
  'two leads' => "\xc3\xc3\xa9", 'truncated in the middle' => "\xf0\x9f\x98 \xf0\x9f\x98\x80",
);

subtest 'utf8_check: a UTF-8 corpus, every truncation, every short sequence' => sub {
  my ($n, %verdict) = (0);
  my $check = sub ($name, $s) {
    $n++;
    same($name, 'utf8_check', [$s]);
    $verdict{PAGI::Server::Protocol::WebSocket::XS::utf8_check($s)}++;
  };
  for my $name (sort keys %VALID) {
    my $s = $VALID{$name};
    for my $pre ('', 'abc', "\xc3\xa9", "\xf0\x9f\x98\x80") {
      $check->("valid $name after " . canon($pre), $pre . $s);
      $check->("valid $name, then ASCII", $pre . $s . 'xyz');
      # every truncation of it: valid but partial, unless it cut at a boundary
      $check->("valid $name cut to $_ bytes after " . canon($pre), $pre . substr($s, 0, $_)) for 0 .. length($s) - 1;
      $check->("valid $name cut to $_ bytes, then ASCII", $pre . substr($s, 0, $_) . 'x') for 1 .. length($s) - 1;
    }
  }
  for my $name (sort keys %INVALID) {
    my $s = $INVALID{$name};
    for my $pre ('', 'abc', "\xc3\xa9") {
      $check->("invalid $name after " . canon($pre), $pre . $s);
      $check->("invalid $name cut to $_ bytes", $pre . substr($s, 0, $_)) for 1 .. length($s) - 1;
      $check->("invalid $name, then valid", $pre . $s . "\xc3\xa9");
    }
  }
  # Every sequence of one or two bytes; three bytes after every lead byte E0-F4 with
  # every second byte and interesting third ones; four bytes after F0-F7
  $check->(sprintf('byte %02x', $_), chr $_) for 0 .. 255;
  for my $x (0x80 .. 0xff) { $check->(sprintf('bytes %02x %02x', $x, $_), chr($x) . chr $_) for 0 .. 255 }
  for my $x (0xe0 .. 0xf4) {
    for my $y (0x00, 0x7f .. 0xc1, 0xff) {
      $check->(sprintf('bytes %02x %02x %02x', $x, $y, $_), chr($x) . chr($y) . chr $_) for 0x41, 0x7f, 0x80, 0x9f, 0xa0, 0xbf, 0xc0;
    }
  }
  for my $x (0xf0 .. 0xf7) {
    for my $y (0x80, 0x8f, 0x90, 0xbf, 0xc0) {
      for my $z (0x41, 0x80, 0xbf) { $check->(sprintf('bytes %02x %02x %02x %02x', $x, $y, $z, $_), pack('C4', $x, $y, $z, $_)) for 0x41, 0x80, 0xbf, 0xc0 }
    }
  }
  # Long strings: the regex of the PP code is bounded; both see the whole string
  $check->('1 MB of ASCII', 'a' x 1_000_000);
  $check->('1 MB of ASCII, then a bad byte', ('a' x 1_000_000) . "\xff");
  $check->('100k 4-byte characters', "\xf0\x9f\x98\x80" x 100_000);
  $check->('100k 4-byte characters, then a truncated one', ("\xf0\x9f\x98\x80" x 100_000) . "\xf0\x9f");
  $check->('100k 2-byte characters with a surrogate in the middle', ("\xc3\xa9" x 50_000) . "\xed\xa0\x80" . ("\xc3\xa9" x 50_000));
  $check->('100k 3-byte characters, then a 5-byte form', ("\xe2\x82\xac" x 100_000) . "\xf8\x88\x80\x80\x80");
  # Odd arguments
  my $up = "caf\xc3\xa9";
  utf8::upgrade($up);
  $check->('an upgraded string of bytes', $up);
  $check->('undef', undef);
  $check->('a number', 12345);
  tally_ok($n, 'utf8_check');
  TODO: {
    local $TODO = 'intended divergence (misuse): a string with characters over 0xFF croaks in XS;'
      . ' PP answers for its characters';
    ok(same('a wide string', 'utf8_check', ["a\x{263a}"]), 'a string with a wide character');
    @FAILS = ();
  }
  is_deeply([sort keys %verdict], [0, 1, 2], 'every verdict is reached');
  note(join ', ', map "$_: $verdict{$_}", sort keys %verdict);
};

subtest "utf8_check: random UTF-8 with random damage (seed $SEED)" => sub {
  srand $SEED + 1;
  my @chars = map { chr } 0x41, 0x7f, 0x80, 0x7ff, 0x800, 0xd7ff, 0xe000, 0xfffd, 0x10000, 0x10ffff, 0x1f600;
  my $n = 0;
  for my $i (1 .. 10_000) {
    my $s = join '', map { $chars[rand @chars] } 0 .. rand 12;
    utf8::encode($s);
    $s = mutate($s) if rand() < 0.7;
    $s = substr($s, 0, rand length $s) if rand() < 0.3;
    $n++;
    same("case $i: " . canon($s), 'utf8_check', [$s]);
  }
  tally_ok($n, "seed $SEED");
};

# The connection checks a text message as its fragments arrive, each time only from
# the last complete character on (lib/PAGI/Server/Connection/WebSocket.pm): the same
# verdicts, fragment by fragment, from both backends
sub fragments_verdicts ($impl, @fragments) {
  my $check = $IMPL{$impl}->can('utf8_check');
  my ($msg, $valid, @out) = ('', 0);
  for my $i (0 .. $#fragments) {
    my $fin = $i == $#fragments;
    $msg .= $fragments[$i];
    my $ok = $check->(substr($msg, $valid));
    push @out, $ok;
    return "@out fail" if !$ok || $fin && $ok != 1;
    my $len = length $msg;
    if ($ok == 2) {
      $len-- while $len > 0 && (ord(substr($msg, $len - 1, 1)) & 0xc0) == 0x80;
      $len--;
    }
    $valid = $len;
  }
  return "@out ok";
}

subtest 'utf8_check fragment by fragment, as the connection calls it' => sub {
  my $n = 0;
  my @texts = ((map { $VALID{$_} . 'z' . $VALID{$_} } sort keys %VALID), (map { "ab$INVALID{$_}cd" } sort keys %INVALID),
    "\xf0\x9f\x98\x80\xf0\x9f\x98\x81\xe2\x82\xac\xc3\xa9", "\xed\x9f\xbf\xed\xa0\x80");
  for my $t (@texts) {
    my $len = length $t;
    for my $c1 (0 .. $len) {
      for my $c2 ($c1 .. $len) {
        my @f = (substr($t, 0, $c1), substr($t, $c1, $c2 - $c1), substr($t, $c2));
        my ($pp, $xs) = (fragments_verdicts('pp', @f), fragments_verdicts('xs', @f));
        $n++;
        push @FAILS, canon(\@f) . "\n  pp: $pp\n  xs: $xs" if $pp ne $xs;
      }
    }
  }
  tally_ok($n, 'fragmentations');
};

# ---- permessage-deflate ---------------------------------------------------------------

sub deflate_ctx ($b, %p) { $IMPL{$b}->can('new_deflate')->({%p}) }

# A result of decompress_message, short: the error, or the bytes' length and digest
sub inflated ($r) {
  return 'DIED' unless defined $r;
  return "error $r->{error}: $r->{message}" if ref $r;
  return 'bytes ' . length($r) . ' ' . substr(Digest::SHA::sha1_hex($r), 0, 16);
}

# Runs the same calls on a fresh context of each backend; a difference goes to @FAILS.
# Returns the XS results.
sub same_inflate ($name, $params, @calls) {
  my %out;
  for my $b (qw(pp xs)) {
    my $c = deflate_ctx($b, %$params);
    $out{$b} = [map { my $r = eval { $c->decompress_message(@$_) }; inflated($r) } @calls];
  }
  my ($pp, $xs) = map { join "\n    ", @{$out{$_}} } qw(pp xs);
  push @FAILS, "$name\n  pp: $pp\n  xs: $xs" if $pp ne $xs;
  return @{$out{xs}};
}

sub json_message ($i) {
  my @w = qw(alpha beta gamma delta room user hello world status online typing chat);
  return qq({"type":"message","id":$i,"room":"room@{[$i % 5]}","text":")
    . join(' ', map { $w[($i * 7 + $_ * 3) % @w] } 1 .. 20 + $i % 100) . qq(","ts":@{[1700000000 + $i]}});
}

sub noise ($len) { join '', map { chr int rand 256 } 1 .. $len }

my @DEFLATE_PARAMS = ({}, {server_max_window_bits => 15, mem_level => 8}, {level => 1}, {level => 9},
  {level => 0}, {server_max_window_bits => 9, mem_level => 1},
  {server_no_context_takeover => 1, client_no_context_takeover => 1});

# Message sequences and what each backend's compressor makes of them
srand $SEED + 2;
my @DEFLATE_MESSAGES = ((map { json_message($_) } 1 .. 12), '', 'x', 'Hello', noise(3000), 'a' x 70_000,
  json_message(5) x 50, noise(100) . ('b' x 5000));
my %COMPRESSED;    # "$b $params_index" => [compressed messages]
for my $i (0 .. $#DEFLATE_PARAMS) {
  for my $b (qw(pp xs)) {
    my $c = deflate_ctx($b, %{$DEFLATE_PARAMS[$i]});
    $COMPRESSED{"$b $i"} = [map { $c->compress_message($_) } @DEFLATE_MESSAGES];
  }
}

subtest 'permessage-deflate: the same compressed frames inflate the same' => sub {
  my ($n, %seen) = (0);
  for my $key (sort keys %COMPRESSED) {
    my ($b, $i) = split ' ', $key;
    my $p = $DEFLATE_PARAMS[$i];
    my @z = @{$COMPRESSED{$key}};
    # The whole sequence, one frame a message, under a generous limit
    $n++;
    my @r = same_inflate("$key: the sequence", $p, map { [$_, 1 << 30] } @z);
    $seen{(split ' ', $_)[0] eq 'bytes' ? 'bytes' : $_}++ for @r;
    # Each message in two frames at several cuts, and in 1-byte frames (short ones);
    # under limits around its size
    for my $k (0 .. $#z) {
      my $z = $z[$k];
      my $len = length $DEFLATE_MESSAGES[$k];
      my @before = map { [$z[$_], 1 << 30] } 0 .. $k - 1;
      my @before_one = $p->{client_no_context_takeover} ? () : @before;
      for my $cut (0, 1, int(length($z) / 2), length($z) - 1, length $z) {
        next if $cut < 0 || $cut > length $z;
        $n++;
        same_inflate("$key: message $k cut at $cut", $p, @before_one,
          [substr($z, 0, $cut), 1 << 30, 0], [substr($z, $cut), 1 << 30, 1]);
      }
      if (length $z < 60) {
        $n++;
        my @bytes = split //, $z;
        same_inflate("$key: message $k a byte a frame", $p, @before_one,
          (map { [$bytes[$_], 1 << 30, $_ == $#bytes ? 1 : 0] } 0 .. $#bytes), @bytes ? () : (['', 1 << 30, 1]));
      }
      for my $max ($len - 1, $len, $len + 1, 0, -1, $len - 0.5, $len + 0.5, "$len", 1e30, 2**63, int($len / 2)) {
        $n++;
        my @r = same_inflate("$key: message $k, max $max", $p, @before_one, [$z, $max],
          [$z[($k + 1) % @z], 1 << 30]);
        $seen{$_}++ for grep { /^error/ } @r;
      }
    }
  }
  tally_ok($n, 'sequences');
  note(join ', ', map "$_: $seen{$_}", sort keys %seen);
};

subtest "permessage-deflate: corrupt and mutated frames (seed $SEED)" => sub {
  srand $SEED + 3;
  my ($n, %kinds) = (0);
  my @z = map { @$_ } @COMPRESSED{map { ("pp $_", "xs $_") } 0, 2};
  my @fixed = (['07'], ['ff'], ['00 05 00 00 00'], ['01 00'], ['05 e0 ff ff ff ff'], ['f2 00 11 00 00'],
    ['f3 48 cd c9 c9 07 00 00'], ['f3 48 cd c9 c9 07 00'], ['f3 48 cd c9 c9 07 00 07'], ['f2 48 05 00 00 00 ff ff', '07'],
    ['00 05 00 fa ff 48 65 6c 6c 6f 00'], ['f2 48 05 00 00 00 ff ff ca c9 c9 07 00'], ['f2 48 cd c9 c9 07 00 00 00 ff ff', '']);
  for my $f (@fixed) {
    my @frames = map { pack 'H*', s/\s+//gr } @$f;
    for my $max (100, 3, -1) {
      $n++;
      same_inflate("fixed @$f, max $max", {}, (map { [$frames[$_], $max, $_ == $#frames ? 1 : 0] } 0 .. $#frames),
        [pack('H*', 'f248cdc9c90700'), $max]);
    }
  }
  for my $i (1 .. $MUTATIONS / 4) {
    my $z = $z[rand @z];
    my $how = int rand 4;
    if ($how == 0) { substr($z, int rand length $z, 1) ^.= chr(1 << int rand 8) if length $z }
    elsif ($how == 1) { $z = mutate($z) }
    elsif ($how == 2) { $z = substr($z, 0, rand length $z) . noise(rand 8) }
    else { $z = noise(rand 300) }
    my $max = (1 << 20, 1 << 20, 100, 1000, 5000, 0)[rand 6];
    my $cut = int rand(length($z) + 1);
    $n++;
    my ($r) = reverse same_inflate("case $i: " . canon(substr($z, 0, 40)) . ' (' . length($z) . " bytes) max $max cut $cut", {},
      [substr($z, 0, $cut), $max, 0], [substr($z, $cut), $max, 1]);
    $kinds{$r =~ /^error (\w+)/ ? $1 : 'bytes'}++;
  }
  tally_ok($n, 'corrupt and mutated');
  note(join ', ', map "$_: $kinds{$_}", sort keys %kinds);
  is_deeply([sort keys %kinds], [qw(bad_deflate bytes inflated_too_large)], 'every outcome is reached');
};

subtest 'permessage-deflate: each backend inflates the other\'s messages' => sub {
  my ($n, $same_bytes, $total) = (0, 0, 0);
  for my $i (0 .. $#DEFLATE_PARAMS) {
    my $p = $DEFLATE_PARAMS[$i];
    for my $pair (['pp', 'xs'], ['xs', 'pp'], ['pp', 'pp'], ['xs', 'xs']) {
      my ($from, $to) = @$pair;
      my $rx = deflate_ctx($to, %$p);
      my $ok = 0;
      for my $k (0 .. $#DEFLATE_MESSAGES) {
        my $r = $rx->decompress_message($COMPRESSED{"$from $i"}[$k], 1 << 30);
        $ok++ if !ref $r && $r eq $DEFLATE_MESSAGES[$k];
      }
      $n++;
      is($ok, scalar @DEFLATE_MESSAGES, "$from to $to: " . join(', ', map { "$_ $p->{$_}" } sort keys %$p));
    }
    for my $k (0 .. $#DEFLATE_MESSAGES) {
      $total++;
      $same_bytes++ if $COMPRESSED{"pp $i"}[$k] eq $COMPRESSED{"xs $i"}[$k];
    }
  }
  # Not a requirement: both run zlib, but PP's is whichever Compress::Raw::Zlib was built
  # with (another version, or zlib-ng's compatible build), and at level 0 the stored
  # blocks end where the output buffer does (doc/codec.md)
  note("compressed bytes identical in both backends for $same_bytes of $total messages");
  is($COMPRESSED{"pp 0"}[12], "\x00", 'the empty message is 0x00 (PP)');
  is($COMPRESSED{"xs 0"}[12], "\x00", 'the empty message is 0x00 (XS)');
  for my $b (qw(pp xs)) {
    is(unpack('H*', deflate_ctx($b, server_max_window_bits => 15)->compress_message('Hello')), 'f248cdc9c90700',
      "\"Hello\" as RFC 7692 7.2.3.1 has it ($b)");
  }
};

subtest 'the facade follows the one backend choice' => sub {
  my $lib = "$FindBin::Bin/../lib";
  my $probe = q{print "$PAGI::Server::Protocol::WebSocket::IMPLEMENTATION $PAGI::Server::Protocol::HTTP1::IMPLEMENTATION"};
  local $ENV{PAGI_SERVER_BACKEND};
  delete $ENV{PAGI_SERVER_BACKEND};
  is(`$^X -I$lib -MPAGI::Server::Protocol::WebSocket -MPAGI::Server::Protocol::HTTP1 -e '$probe' 2>&1`, 'XS XS',
    'the XS codec when the XS object is built');
  $ENV{PAGI_SERVER_BACKEND} = 'pp';
  is(`$^X -I$lib -MPAGI::Server::Protocol::WebSocket -MPAGI::Server::Protocol::HTTP1 -e '$probe' 2>&1`, 'PP PP',
    'PP when PP is forced');
  # A WebSocket::XS that cannot load (a stand-in) is an error, not a silent PP codec
  my $dir = tempdir(CLEANUP => 1);
  mkdir "$dir/$_" for 'PAGI', 'PAGI/Server', 'PAGI/Server/Protocol', 'PAGI/Server/Protocol/WebSocket';
  open my $fh, '>', "$dir/PAGI/Server/Protocol/WebSocket/XS.pm" or die $!;
  print $fh qq{package PAGI::Server::Protocol::WebSocket::XS; die "the XS object has no parse_frame\\n";\n};
  close $fh;
  for my $want ('auto', 'xs') {
    $ENV{PAGI_SERVER_BACKEND} = $want;
    my $out = `$^X -I$dir -I$lib -MPAGI::Server::Protocol::WebSocket -e '$probe' 2>&1`;
    isnt($?, 0, "$want: loading fails");
    like($out, qr/no parse_frame/, '... with the reason');
  }
};

is($WARNINGS{xs}, 0, 'the XS backend never warned');
note("the PP backend warned $WARNINGS{pp} times") if $WARNINGS{pp};

done_testing;
