package PAGI::Server::Connection::HTTP2;
use strict;
use warnings;
use experimental 'signatures';
use PAGI::Server::Connection ();
use PAGI::Server::Connection::Fields qw(:fields);
use PAGI::Server::Connection::Request qw(:facts);
use PAGI::Server::Config qw(H2_SETTINGS KEEPALIVE_TIMEOUT_S);
use PAGI::Server::Shared qw(NOW STOPPING);
use PAGI::Server::Protocol::HTTP1;
use PAGI::Server::Protocol::HTTP2;
use PAGI::Server::Protocol::Errors;
use Future;
our @ISA = ('PAGI::Server::Connection');

our $VERSION = '0.001';

# A connection speaking HTTP/2 (RFC 9113): the socket is the connection's (reading,
# writing, TLS, timeouts), the protocol is the codec's session
# (PAGI::Server::Protocol::HTTP2: bytes in, events and bytes out), and each request is
# a stream object (PAGI::Server::Connection::HTTP2::Stream) that serves one scope with
# the same request, response, SSE and WebSocket code as an HTTP/1.1 connection, its
# bytes going to the session instead of the socket. A connection becomes one by ALPN
# (h2 on TLS), by the client connection preface (h2c with prior knowledge) or by
# Upgrade: h2c. Its phase stays IDLE: what is under way is its streams'.

# The connection's record, in PROTO: the codec's session; the streams the app knows
# (id => stream); the streams whose send waits for their buffer to drain; when a
# graceful stop's final GOAWAY is due; whether the session's output is being pulled;
# whether the connection is going (its streams are being ended with it); the template
# a new stream's record is copied from (Stream.pm: the fields it shares with the
# connection and its starting values, made with the first stream)
use PAGI::Server::Record qw(session streams waiting goaway_at pulling going stream_template);

use constant {
  OUTPUT_CHUNK => 1 << 16,    # the most taken from the session at once
  GOAWAY_GRACE => 1,          # seconds between a graceful stop's two GOAWAYs
};

require PAGI::Server::Connection::HTTP2::Stream;

# Turns an accepted connection into an HTTP/2 one (ALPN h2, or the preface seen), or
# (%up: settings, head, req, switching) one whose HTTP/1.1 request asked for h2c: its
# 101 (switching) is written once the session is made, and that request is stream 1.
# Returns the connection, or undef when the upgrade's HTTP2-Settings is not valid
# (nothing was written: the request is then served as HTTP/1.1).
sub take_over ($class, $conn, %up) {
  my $settings = $conn->[CFG][H2_SETTINGS];
  $settings = {%$settings, upgrade => $up{settings}, upgrade_head => $up{head} ? 1 : 0} if $up{req};
  my ($session, $error) = PAGI::Server::Protocol::HTTP2::new_session($settings);
  return undef unless $session;
  $conn->_write($up{switching}) if $up{switching};
  my $self = bless $conn, $class;
  $self->[PROTO] = [$session, {}, {}, undef, 0, 0, undef];
  @$self[PHASE, KEEP, RQ] = (PAGI::Server::Connection::IDLE, 1, undef);
  $self->_idle;
  $self->_open_stream(1, $up{req}, 1) if $up{req};
  # The server's SETTINGS first, then whatever the client sent already
  $self->_process_input;
  return $self;
}

# An HTTP/1.1 request with Upgrade: h2c (RFC 7540 3.2; PAGI::Server::Connection asks,
# on a plain connection of a server with http2): answered 101 and served as stream 1
# of an HTTP/2 connection, when it has exactly one HTTP2-Settings field and no body
# (its body would have to be read whole first); otherwise the upgrade is ignored and
# the request is served as HTTP/1.1. $req: the parser's result, $facts its facts.
sub upgrade ($class, $conn, $req, $facts) {
  my @settings = map { $_->[1] } grep { $_->[0] eq 'http2-settings' } @{$req->{headers}};
  return 0 if @settings != 1 || $facts->[FACT_CHUNKED] || $facts->[FACT_CONTENT_LENGTH];
  # The request as the HTTP/2 codec would have made it (stream 1's scope), without the
  # upgrade's hop-by-hop fields
  my %h2req = (%$req, http_version => '2',
    headers => [grep { $_->[0] !~ /\A(?:connection|upgrade|http2-settings)\z/ } @{$req->{headers}}]);
  $h2req{sse} = 1 if $facts->[FACT_SSE];
  $h2req{expect_continue} = 1 if $facts->[FACT_EXPECT_CONTINUE];
  my ($bytes) = PAGI::Server::Protocol::HTTP1::serialize_response(101, [['Upgrade', 'h2c']],
    PAGI::Server::Protocol::HTTP1::F_UPGRADE, undef);
  return $class->take_over($conn, settings => $settings[0], head => $req->{method} eq 'HEAD', req => \%h2req,
    switching => $bytes) ? 1 : 0;
}

# ---- reading -------------------------------------------------------------------------

sub _process_input ($self) {
  my $h2 = $self->[PROTO];
  if (length $self->[RBUF]) {
    my ($events, $error) = $h2->[SESSION]->feed($self->[RBUF]);
    $self->[RBUF] = '';
    $self->_events($events);
    return $self->_connection_error($error) if $error;
  }
  $self->_output;
}

# What the session says: a new request, its body, its end, a stream gone
sub _events ($self, $events) {
  my $streams = $self->[PROTO][STREAMS];
  for my $ev (@$events) {
    my ($type, $id) = @$ev;
    if ($type eq 'request') { $self->_open_stream($id, $ev->[2], $ev->[3]) }
    elsif ($type eq 'data') { $streams->{$id}->_data($ev->[2], $ev->[3]) if $streams->{$id} }
    elsif ($type eq 'trailers') { $streams->{$id}->_data('', 1) if $streams->{$id} }
    elsif ($type eq 'reset' || $type eq 'closed') {
      $streams->{$id}->_ended($type eq 'reset' ? $ev->[2] : undef) if $streams->{$id};
    }
    elsif ($type eq 'error') {
      $self->[SERVER]->log(info => $self->_peer . ": HTTP/2 stream $id reset: $ev->[2]{message}");
    }
    elsif ($type eq 'goaway') {
      $self->[SERVER]->log(debug => $self->_peer . ": HTTP/2 GOAWAY from the client (code $ev->[2])");
    }
  }
}

sub _open_stream ($self, $id, $req, $end_stream) {
  if (my $kind = $req->{error}) {
    # Refused before the app sees it (doc/codec.md: the h2req kinds): a status on the
    # stream, then its end
    my ($status, $message) = @{$PAGI::Server::Protocol::Errors::H2REQ{$kind}};
    $self->[SERVER]->log(warn => $self->_peer . ": HTTP/2 stream $id: $status $message");
    my $session = $self->[PROTO][SESSION];
    my $reason = PAGI::Server::Protocol::HTTP1::error_reason($status);
    $session->respond($id, $status, [['content-type', 'text/plain; charset=utf-8']], 0);
    $session->send_data($id, "$reason\n", 1);
    return;
  }
  my $st = $self->[PROTO][STREAMS]{$id} = PAGI::Server::Connection::HTTP2::Stream->new($self, $id);
  $self->[DEADLINE_KIND] = '';
  $st->start($req, $end_stream);
}

# ---- writing ---------------------------------------------------------------------------

# Takes what the session has to write while the socket keeps up (its buffer below the
# low mark: a client that does not read gets nothing more framed for it), releases the
# streams whose sends waited for their buffers, and closes once the session is done.
# Streams call it after they gave the session something; inside a read it runs once,
# at its end, so that everything answered in one read goes out in one write.
sub _output ($self) {
  my $h2 = $self->[PROTO];
  return if $h2->[PULLING] || $self->[PHASE] == PAGI::Server::Connection::CLOSED;
  $h2->[PULLING] = 1;
  my $session = $h2->[SESSION];
  while (length $self->[WBUF] < $self->[WRITE_LOW] && $self->[PHASE] != PAGI::Server::Connection::CLOSED) {
    my $out = $session->output(OUTPUT_CHUNK);
    # (writing ends streams: their closed or reset events, which may give the session
    # more to write, a GOAWAY once the last stream of a stop has gone)
    if (!length $out) { my $events = $session->events; last unless @$events; $self->_events($events); next }
    $self->_write($out);
  }
  $h2->[PULLING] = 0;
  # More to write once the socket's buffer drains: the connection's drain Future calls
  # _released (from its write-ready callback, or at the end of a read that wrote it all)
  $self->[DRAIN] //= Future->new if $session->want_write && $self->[PHASE] != PAGI::Server::Connection::CLOSED;
  my $waiting = $h2->[WAITING];
  for my $id (keys %$waiting) {
    next if $session->buffered($id) >= $self->[WRITE_LOW];
    my $st = delete $waiting->{$id};
    $st->_released;
  }
  return $self->_close_after_flush if $session->is_closed && $self->[PHASE] < PAGI::Server::Connection::CLOSING;
}

# A stream waits for its buffer to drain (its $send did not finish at once)
sub _wait_drain ($self, $st) { $self->[PROTO][WAITING]{$st->[SID]} = $st }

# A stream has gone (PAGI::Server::Connection::HTTP2::Stream's _close)
sub _stream_gone ($self, $id) {
  my $h2 = $self->[PROTO] or return;
  delete $h2->[STREAMS]{$id};
  delete $h2->[WAITING]{$id};
  $self->_idle if !%{$h2->[STREAMS]} && !$h2->[GOING];
}

# Is the connection still there for its streams (not closing with them)?
sub _alive ($self) { $self->[PROTO] && !$self->[PROTO][GOING] && $self->[PHASE] < PAGI::Server::Connection::CLOSING }

# The socket's buffer fell below the low mark: more of the session's output
sub _released ($self) {
  $self->SUPER::_released;
  $self->_output;
}

# ---- errors, stopping, closing -------------------------------------------------------

# A connection error (the GOAWAY is in the session's output): every stream ends, the
# GOAWAY is written, the connection closes
sub _connection_error ($self, $error) {
  $self->[SERVER]->log(info => $self->_peer . ": HTTP/2 connection error: $error->{message}");
  $self->_disconnect('protocol_error');
  $self->_output;
  $self->_close_after_flush(1);
}

# No stream open: the keep-alive idle time runs
sub _idle ($self) {
  @$self[DEADLINE_KIND, DEADLINE] = ('idle', $self->[LIVE][NOW] + $self->[CFG][KEEPALIVE_TIMEOUT_S]);
  # (a graceful stop ends once its streams have)
  $self->_goaway if $self->[LIVE][STOPPING] || !$self->[KEEP];
}

# The final GOAWAY: no new stream; the session closes once the open ones have
sub _goaway ($self) {
  $self->[PROTO][GOAWAY_AT] = undef;
  $self->[PROTO][SESSION]->goaway(0);
  $self->_output;
}

sub _tick ($self, $now) {
  return $self->_abort('write_timeout') if defined $self->[WDEADLINE] && $now > $self->[WDEADLINE];
  my $h2 = $self->[PROTO];
  $_->_tick($now) for values %{$h2->[STREAMS]};
  return $self->_goaway if defined $h2->[GOAWAY_AT] && $now >= $h2->[GOAWAY_AT];
  my $kind = $self->[DEADLINE_KIND] or return;
  return if $now <= $self->[DEADLINE];
  # Idle too long: GOAWAY, then close; closing or lingering too long: close
  if ($kind eq 'idle') {
    $self->[DEADLINE_KIND] = '';
    $self->[KEEP] = 0;
    return $self->_goaway;
  }
  $self->_close;
}

# The server stops: GOAWAY in two steps (RFC 9113 6.8: a notice, and a second later the
# last stream id), streams in flight finish (event streams end, WebSockets get their
# Close 1001), then the connection closes; forced: everything now
sub _shutdown ($self, $force = 0) {
  my $h2 = $self->[PROTO];
  $self->[KEEP] = 0;
  if ($force) {
    $self->_disconnect('server_shutdown');
    return $self->_close;
  }
  return $self->_goaway unless %{$h2->[STREAMS]};
  return if defined $h2->[GOAWAY_AT];
  $h2->[SESSION]->goaway(0, 1);
  $h2->[GOAWAY_AT] = $self->[LIVE][NOW] + GOAWAY_GRACE;
  $_->_shutdown for values %{$h2->[STREAMS]};
  $self->_output;
}

sub _soft_stop ($self) { $self->_shutdown }

# The client closed its side (or the socket broke): every stream is told, then close
sub _on_eof ($self) {
  $self->[EOF] = 1;
  $self->_pause_read;
  return $self->_close if $self->[PHASE] >= PAGI::Server::Connection::CLOSING;
  $self->_abort('client_closed');
}

# Every stream ends, with $reason for its app
sub _disconnect ($self, $reason, @) {
  my $h2 = $self->[PROTO] or return;
  $h2->[GOING] = 1;
  my $streams = $h2->[STREAMS];
  # (each leaves STREAMS and WAITING as it closes: _stream_gone)
  $streams->{$_}->_abort($reason) for sort { $a <=> $b } keys %$streams;
}

1;

=head1 NAME

PAGI::Server::Connection::HTTP2 - an HTTP/2 connection of PAGI::Server

=head1 DESCRIPTION

Internal. Takes over a L<PAGI::Server::Connection> that speaks HTTP/2: after ALPN
C<h2> on TLS, after the client connection preface on a plain connection (h2c with
prior knowledge), or after an HTTP/1.1 request with C<Upgrade: h2c> (answered C<101>,
the request is stream 1). Feeds what the socket reads to the codec's session
(L<PAGI::Server::Protocol::HTTP2>), opens a L<PAGI::Server::Connection::HTTP2::Stream>
for each request, and writes the session's output while the socket keeps up. A
graceful stop sends GOAWAY in two steps and lets the streams in flight finish; a
connection idle for the keep-alive timeout gets a GOAWAY and is closed.

=cut
