use v5.32;
use warnings;
use experimental 'signatures';
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use PAGI::Server::Protocol::HTTP2;
use PAGI::Test::H2 qw(frame settings hello get PING SETTINGS ACK RST_STREAM END_STREAM);
use PAGI::Test::H2Corpus qw(bad_frames);

# Bad input by RFC 9113 section 5.4 (and the attacks with a CVE): what each gets from
# the active backend. A connection error: feed's error has the kind, the output ends with
# a GOAWAY carrying the code and the last stream id, the session is closed (unless
# streams in flight may finish) and reads nothing more. A stream error: an 'error' event names the kind, RST_STREAM carries the
# code, the connection goes on. (nghttp2, and so both backends, makes most of what RFC
# 9113 allows either way a connection error: doc/codec.md says why.)

my $backend = $PAGI::Server::Protocol::HTTP2::IMPLEMENTATION;
note "backend: $backend";

for my $case (bad_frames()) {
  my ($name, $bytes, $expect, $settings) = @$case;
  subtest $name => sub {
    my $c = PAGI::Test::H2->new;
    $bytes = $bytes->($c) if ref $bytes;
    my ($s) = PAGI::Server::Protocol::HTTP2::new_session($settings // {});
    my $reader = PAGI::Test::H2->new;
    $reader->read($s->output(1 << 20));
    my ($events, $error) = $s->feed($bytes);
    my @frames = $reader->read($s->output(1 << 20));
    my ($what, $code, $kind) = @$expect;
    if ($what eq 'GOAWAY') {
      is($error && $error->{error}, $kind, "a connection error: $kind");
      is($error && $error->{message}, $PAGI::Server::Protocol::Errors::H2{$kind}[1], '... with its message');
      is(PAGI::Server::Protocol::HTTP2::error_code($kind), $code, "... whose code is $code");
      my ($goaway) = grep { $_->[0] eq 'GOAWAY' } @frames;
      ok($goaway, 'a GOAWAY is written') or return diag explain \@frames;
      is($goaway->[3][1], $code, "... with error code $code");
      # (the rapid-reset GOAWAY names the last stream received when it was queued)
      cmp_ok($goaway->[3][0], '<=', $s->last_stream_id, '... and the last stream id processed (or before it)');
      is($frames[-1][0], 'GOAWAY', '... last');
      ok($s->is_closed, 'the session is closed') unless $kind eq 'rapid_reset';
      my ($more, $again) = $s->feed(frame(PING, 0, 0, '12345678'));
      is_deeply([$more, $s->output(1 << 20)], [[], ''], 'nothing more is read or written') unless $kind eq 'rapid_reset';
      is_deeply($again, $error, 'feed keeps giving the error');
    }
    elsif ($what eq 'RST_STREAM') {
      is($error, undef, 'no connection error');
      my ($err) = grep { $_->[0] eq 'error' } @$events;
      ok($err, 'an error event') or return diag explain $events;
      is($err->[2]{error}, $kind, "... $kind");
      my ($rst) = grep { $_->[0] eq 'RST_STREAM' && $_->[2] == $err->[1] } @frames;
      ok($rst, "RST_STREAM on stream $err->[1]") or return diag explain \@frames;
      is($rst->[3], $code, "... with code $code");
      ok(!$s->is_closed, 'the connection goes on');
    }
    else {
      is($error, undef, 'no connection error');
      ok(!grep({ $_->[0] eq 'GOAWAY' || $_->[0] eq 'RST_STREAM' } @frames), 'no GOAWAY, no RST_STREAM');
      ok(!$s->is_closed, 'the connection goes on');
    }
  };
}

# Errors found later than the bytes arrive: the rapid-reset GOAWAY lets the streams in
# flight finish (INTERNAL_ERROR, as nghttp2 does), a flood from a client that never reads
subtest 'rapid reset: streams in flight finish' => sub {
  my $c = PAGI::Test::H2->new;
  my ($s) = PAGI::Server::Protocol::HTTP2::new_session({rst_rate_limit => [3, 0]});
  $s->output(1 << 20);
  my $bytes = hello() . frame(SETTINGS, ACK, 0) . $c->headers(1, [get("/slow")], END_STREAM);
  $bytes .= join '', map { $c->headers($_, [get('/')]) . frame(RST_STREAM, 0, $_, pack "N", 8) } 3, 5, 7, 9, 11;
  my ($events, $error) = $s->feed($bytes);
  is($error && $error->{error}, 'rapid_reset', 'rapid_reset');
  ok(!$s->is_closed, 'not closed: stream 1 is in flight');
  is_deeply([$s->respond(1, 200, [], 1)], [1, undef], 'stream 1 is answered');
  my @frames = PAGI::Test::H2->new->read($s->output(1 << 20));
  ok((grep { $_->[0] eq 'HEADERS' && $_->[2] == 1 } @frames), '... its HEADERS are written');
  ok($s->is_closed, 'then the session is closed');
};

done_testing;
