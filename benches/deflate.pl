#!/usr/bin/env perl
# permessage-deflate at the codec: compress_message and decompress_message, XS (zlib
# through libz-sys) vs PP (Compress::Raw::Zlib), on a stream of JSON chat messages of
# about 1 KiB and on 1 KiB of random bytes, with context takeover (the default) and
# without; and the bytes a message puts on the wire, compressed or not. One iteration
# is a stream of 200 messages through a fresh context, so the times include making the
# context (or taking a spare, without context takeover).
# Then the JSON stream through the XS deflater under other settings (window bits,
# memLevel, level), and a 64 MiB bomb against a 1 MiB limit. End to end (a server
# echoing through a socket): benches/ws_sse.pl.
#
#   perl Makefile.PL && make && perl benches/deflate.pl [seconds per case, default 2]
use v5.32;
use warnings;
use experimental 'signatures';
use FindBin;
use lib "$FindBin::Bin/../lib";
use Benchmark qw(cmpthese timethese);
use PAGI::Server::Protocol::WebSocket;
use PAGI::Server::Protocol::WebSocket::PP;
use PAGI::Server::Protocol::WebSocket::XS;

my $secs = -abs($ARGV[0] // 2);
my %WS = (xs => 'PAGI::Server::Protocol::WebSocket::XS', pp => 'PAGI::Server::Protocol::WebSocket::PP');
my $N = 200;

# Chat-like JSON, about 1 KiB each, no two alike; and random bytes
srand 42;
my @words = qw(the a to and of in is it you that he was for on are with as I his they be at one have this from
  or had by hot word but what some we can out other were all there when up use your how said an each she);
my @json = map {
  my $i = $_;
  sprintf '{"type":"chat.message","id":%d,"room":"room-%d","user":{"id":%d,"name":"user%d","status":"%s"},'
    . '"text":"%s","mentions":[%s],"ts":%d,"edited":false}', $i, $i % 7, 1000 + $i % 97, $i % 97,
    ('online', 'away', 'busy')[$i % 3], join(' ', map { $words[rand @words] } 1 .. 150 + rand 20),
    join(',', map { 1000 + int rand 97 } 1 .. $i % 4), 1_700_000_000 + $i * 13;
} 1 .. $N;
my @random = map { join '', map { chr int rand 256 } 1 .. 1024 } 1 .. $N;

my %params = (takeover => {}, 'no takeover' => {server_no_context_takeover => 1, client_no_context_takeover => 1});
printf "perl %s; %d messages a stream; JSON %d bytes on average, random 1024; default settings (%s)\n\n", $^V, $N,
  avg(map { length } @json),
  join(', ', map { "$_ $PAGI::Server::Protocol::WebSocket::DEFLATE_SETTINGS{$_}" } qw(server_max_window_bits mem_level level));

sub avg { my $t = 0; $t += $_ for @_; $t / @_ }

# The bytes on the wire (server frames: 2 or 4 header bytes)
sub frame_len ($len) { $len + ($len < 126 ? 2 : $len < 65536 ? 4 : 10) }

for my $case (['JSON ~1 KiB', \@json], ['random 1 KiB', \@random]) {
  my ($name, $messages) = @$case;
  for my $mode (sort keys %params) {
    my $p = $params{$mode};
    my (%compressed, %stats);
    # Sanity: each backend inflates the other's stream
    for my $b (keys %WS) {
      my $c = $WS{$b}->can('new_deflate')->($p);
      $compressed{$b} = [map { $c->compress_message($_) } @$messages];
    }
    for my $pair (['xs', 'pp'], ['pp', 'xs']) {
      my $rx = $WS{$pair->[1]}->can('new_deflate')->($p);
      for my $i (0 .. $#$messages) {
        $rx->decompress_message($compressed{$pair->[0]}[$i], 1 << 20) eq $messages->[$i]
          or die "$pair->[1] does not inflate $pair->[0]'s message $i ($name, $mode)\n";
      }
    }
    my $plain = avg(map { frame_len(length) } @$messages);
    printf "== %s, %s: on the wire %.0f bytes a message uncompressed; compressed %s\n", $name, $mode, $plain,
      join(', ', map { sprintf '%s %.0f (%.0f%%)', uc, avg(map { frame_len(length) } @{$compressed{$_}}),
        100 * avg(map { frame_len(length) } @{$compressed{$_}}) / $plain } sort keys %WS);
    my $r = timethese($secs, {
      map {
        my $b = $_;
        ("compress $b" => sub {
          my $c = $WS{$b}->can('new_deflate')->($p);
          my $z = $c->compress_message($_) for @$messages;
        },
        "decompress $b" => sub {
          my $c = $WS{$b}->can('new_deflate')->($p);
          my $m = $c->decompress_message($_, 1 << 20) for @{$compressed{$b}};
        })
      } keys %WS
    }, 'none');
    for my $k (sort keys %$r) {
      my $t = $r->{$k};
      my $per = ($t->[1] + $t->[2]) / $t->iters / $N;    # CPU seconds a message
      printf "  %-14s %7.1f us a message  %8.0f messages/s\n", $k, 1e6 * $per, 1 / $per;
    }
    say '';
  }
}

say '== the JSON stream, takeover, XS, other settings (window bits / memLevel / level)';
for my $set ([12, 5, 6], [15, 8, 6], [12, 5, 1], [15, 8, 1], [12, 5, 9]) {
  my %p = (server_max_window_bits => $set->[0], mem_level => $set->[1], level => $set->[2]);
  my ($in, $out) = (0, 0);
  my $c = $WS{xs}->can('new_deflate')->(\%p);
  ($in, $out) = ($in + length $_, $out + length $c->compress_message($_)) for @json;
  my $t = timethese($secs, {x => sub { my $c = $WS{xs}->can('new_deflate')->(\%p); my $z = $c->compress_message($_) for @json }},
    'none')->{x};
  printf "  %2d / %d / %d: %5.1f%% of the bytes, %5.1f us a message\n", @$set, 100 * $out / $in,
    1e6 * ($t->[1] + $t->[2]) / $t->iters / $N;
}
say '';

say '== a bomb: 64 MiB of zeros, compressed, against a 1 MiB limit';
my $bomb = $WS{xs}->can('new_deflate')->({level => 9})->compress_message("\0" x (64 << 20));
for my $b (sort keys %WS) {
  my $t = timethese($secs, {x => sub { my $r = $WS{$b}->can('new_deflate')->({})->decompress_message($bomb, 1 << 20) }},
    'none')->{x};
  my $r = $WS{$b}->can('new_deflate')->({})->decompress_message($bomb, 1 << 20);
  printf "  %s: %d bytes of payload -> %s in %.2f ms\n", uc $b, length $bomb, ref $r ? $r->{error} : 'no error?',
    1e3 * ($t->[1] + $t->[2]) / $t->iters;
}
