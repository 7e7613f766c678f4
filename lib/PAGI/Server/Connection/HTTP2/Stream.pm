package PAGI::Server::Connection::HTTP2::Stream;
use strict;
use warnings;
use experimental 'signatures';
use Time::HiRes ();
use PAGI::Server::Future;
use PAGI::Server::Connection ();
use PAGI::Server::ConnectionState qw(:fields);
use PAGI::Server::Connection::Fields qw(:fields);
use PAGI::Server::Connection::Request qw(:fields :facts);
use PAGI::Server::Config qw(ROOT_PATH PLAIN_HTTP MAX_BODY_SIZE REQUEST_TIMEOUT_S MAX_REQUESTS);
use PAGI::Server::Shared qw(APP_STATE NOW SERVED ACCESS_LOGGER);
use PAGI::Server::Protocol::HTTP1;
use PAGI::Server::Protocol::HTTP2;
use PAGI::Server::Protocol::Errors;
use PAGI::Server::Transport;
use PAGI::Server::Connection::HTTP2 ();    # (its record's constants: STREAM_TEMPLATE)
our @ISA = ('PAGI::Server::Connection');

our $VERSION = '0.001';

# One stream of an HTTP/2 connection (PAGI::Server::Connection::HTTP2): one request and
# its scope. It is a connection object whose transport is the stream: the request,
# response, SSE and WebSocket code of an HTTP/1.1 connection runs on it unchanged
# (PAGI::Server::Connection, ::Response, ::SSE, ::WebSocket), and the protocol hooks
# they call (_write, _write_whole, _write_head, _write_trailers, _end_chunks,
# _continue, _send_future, _wire_error, _close_after_flush, ...) are the stream's:
# they give the bytes to the connection's session (respond, send_data, send_trailers)
# instead of the socket. Its connection is in PARENT, its id in SID. Stream classes for
# event streams and WebSockets come at the end (the SSE and WebSocket classes first in
# their method order, then this one).

BEGIN {
  no strict 'refs';
  *$_ = \&{"PAGI::Server::Protocol::HTTP1::$_"} for qw(F_HEAD M_NONE M_LENGTH M_CLOSE);
}
my $DONE = $PAGI::Server::Future::DONE;
my $H2 = 'PAGI::Server::Connection::HTTP2';

# The fields of the connection the stream shares (its server, options, loop, peer, scheme,
# TLS session, output marks)
my @SHARED = (SERVER, CFG, LIVE, LOOP, CLIENT, SERVER_ADDR, SCOPE_EXTRA, URL_SCHEME, TLS, WRITE_HIGH, WRITE_LOW);

# (a new stream's record is a copy of a template the connection keeps in PROTO,
# STREAM_TEMPLATE: the shared fields and the starting values, set once per connection)
sub new ($class, $conn, $id) {
  my $self = bless [@{$conn->[PROTO][PAGI::Server::Connection::HTTP2::STREAM_TEMPLATE] //= _template($conn)}], $class;
  @$self[PARENT, SID] = ($conn, $id);
  $self->[RECEIVE] = sub { $self->_receive };
  # (HTTP's send as a function, as on an HTTP/1.1 connection: the SSE and WebSocket
  # classes install a method-dispatching one when they take the stream over)
  $self->[SEND]    = sub { PAGI::Server::Connection::Response::_send($self, $_[0]) };
  $PAGI::Server::Connection::LIVE++;
  return $self;
}

sub _template ($conn) {
  my $t = [];
  @$t[@SHARED] = @$conn[@SHARED];
  @$t[H2SESSION, ENDED, WHOLE, PHASE, KEEP, RBUF, WBUF, READING, EOF, DEADLINE_KIND]
    = ($conn->[PROTO][PAGI::Server::Connection::HTTP2::SESSION], '', \&_write_whole, PAGI::Server::Connection::REQUEST, 0, '', '', 1, 0, '');
  return $t;
}


# After the stream gave the session something: its connection writes it, unless it is
# inside a read (which writes once, at its end)
sub _flush ($self) {
  my $conn = $self->[PARENT] or return;
  $conn->_output unless $conn->[IN_PROCESS];
}

# ---- the request -----------------------------------------------------------------------

my $NO_FACTS = [];
Internals::SvREADONLY(@$NO_FACTS, 1);

# A request head: its scope (made from the codec's request hash as an HTTP/1.1
# connection makes it from the parser's, written out in both places: one sub for the
# two measured 2% more instructions a request on each), then the app; an extended CONNECT for
# websocket is a WebSocket (RFC 8441), Accept: text/event-stream an event stream
sub start ($self, $req, $end_stream) {
  my ($cfg, $live) = @$self[CFG, LIVE];
  my $protocol = delete $req->{protocol};
  delete $req->{scheme};    # (:scheme; the scope's scheme is the connection's)
  # (the codec's facts only when there are any: a plain GET has the six keys alone)
  my $facts = keys %$req == 6 ? $NO_FACTS : [delete @$req{@PAGI::Server::Connection::Request::FACT_KEYS}];
  my $scope = $req;
  @$scope{qw(type pagi scheme root_path client server state extensions pagi.transport)} = (
    'http', {version => '0.3', spec_version => '0.3'}, $self->[URL_SCHEME], $cfg->[ROOT_PATH], $self->[CLIENT],
    $self->[SERVER_ADDR], {%{$live->[APP_STATE]}}, {},
    $self->[TRANSPORT] = PAGI::Server::Transport::of($self, @$self[WRITE_HIGH, WRITE_LOW]));
  $self->[SCOPE_EXTRA] and $self->_scope_extra($scope);
  my $rq = $self->[RQ] = PAGI::Server::Connection::Request::start($req, $facts,
    bless([1, 0, 0], 'PAGI::Server::ConnectionState'), $req->{method} eq 'HEAD' ? F_HEAD : 0);
  $rq->[REQ_TIME] = Time::HiRes::time() if $live->[ACCESS_LOGGER];
  if (defined $protocol) {
    # (the stream's DATA are then the WebSocket's frames, not a body)
    return $self->_wire_error('connect_unsupported') if $protocol ne 'websocket' || $cfg->[PLAIN_HTTP];
    return "${H2}::WebSocket"->take_over($self, $scope);
  }
  if (!$end_stream) {
    return $self->_wire_error('body_too_large')
      if $cfg->[MAX_BODY_SIZE] && ($facts->[FACT_CONTENT_LENGTH] // 0) > $cfg->[MAX_BODY_SIZE];
    @$rq[BODY_MODE, BODY_OPEN] = (1, 1);
    @$self[DEADLINE_KIND, DEADLINE] = ('body', $live->[NOW] + $cfg->[REQUEST_TIMEOUT_S]);
  }
  return "${H2}::SSE"->take_over($self, $scope) if $facts->[FACT_SSE] && !$cfg->[PLAIN_HTTP];
  $scope->{'pagi.connection'} = $rq->[CSTATE];
  $self->_call_app($scope);
}

# Body bytes (or its end) from the client
sub _data ($self, $bytes, $end) {
  my $rq = $self->[RQ];
  if (!$rq || !$rq->[BODY_OPEN]) {
    # (nobody will read them: the window is given back at once)
    $self->_consumed(length $bytes);
    return;
  }
  my $cfg = $self->[CFG];
  $rq->[BODY_SEEN] += length $bytes;
  return $self->_body_error('body_too_large', 'body_too_large')
    if $cfg->[MAX_BODY_SIZE] && $rq->[BODY_SEEN] > $cfg->[MAX_BODY_SIZE];
  $rq->[BODY_BUF] .= $bytes;
  if ($end) {
    @$rq[BODY_OPEN, BODY_MODE] = (0, 0);
    $self->[DEADLINE_KIND] = '' if $self->[DEADLINE_KIND] eq 'body';
  }
  elsif ($self->[DEADLINE_KIND] eq 'body') { $self->[DEADLINE] = $self->[LIVE][NOW] + $cfg->[REQUEST_TIMEOUT_S] }
  # An app that has finished will not read the rest
  return $self->_consumed(length delete $rq->[BODY_BUF]) if !$rq->[APP_RUNNING];
  $self->_deliver_body if $rq->[RECV_WAIT];
}

# Flow control follows the app: what it received is what the session may let the
# client send again
sub _body_event ($self) {
  my $ev = $self->SUPER::_body_event;
  $self->_consumed(length $ev->{body});
  return $ev;
}

sub _consumed ($self, $n) {
  return unless $n && $self->[PHASE] != PAGI::Server::Connection::CLOSED;
  $self->[H2SESSION]->consumed($self->[SID], $n);
  $self->_flush;
}

# (flow control does the pausing: nothing to stop reading)
sub _pause_read ($self) { $self->[READING] = 0 }
sub _resume_read ($self) { $self->[READING] = 1 }

# ---- the response --------------------------------------------------------------------

# Expect: 100-continue: an interim response (RFC 9113 8.1)
sub _continue ($self) {
  $self->[H2SESSION]->respond($self->[SID], 100, [], 0);
  $self->_flush;
}

# Is the response one without a body (HEAD, 204, 304)?
sub _bodiless ($self) {
  my $rq = $self->[RQ];
  return $rq->[FLAGS] & F_HEAD || $rq->[STATUS] == 204 || $rq->[STATUS] == 304;
}

sub _respond ($self, $end) {
  my $rq = $self->[RQ];
  my ($ok, $length) = $self->[H2SESSION]->respond($self->[SID], $rq->[STATUS], $rq->[HEADERS], $end ? 1 : 0);
  return (undef, "http.response.start: $length\n") unless $ok;
  $rq->[HEAD_SENT] = 1;
  $self->[ENDED] = 'ended' if $end;
  return (1, $length);
}

# (the busiest path: _bodiless, _respond and _flush written out)
sub _write_whole ($self, $body) {
  my $rq = $self->[RQ];
  my $status = $rq->[STATUS];
  my $data = !($rq->[FLAGS] & F_HEAD || $status == 204 || $status == 304) && length $body;
  if ($data) {
    # The app's own Content-Length must match, as on HTTP/1.1
    for (@{$rq->[HEADERS]}) {
      next unless lc $_->[0] eq 'content-length';
      my $cl = $_->[1];
      return "http.response.body: " . length($body) . " bytes of body for a Content-Length of $cl\n"
        if $cl =~ /\A[0-9]+\z/ && $cl != length $body;
    }
  }
  my $session = $self->[H2SESSION];
  my ($ok, $err) = $session->respond($self->[SID], $status, $rq->[HEADERS], $data ? 0 : 1);
  return "http.response.start: $err\n" unless $ok;
  $rq->[HEAD_SENT] = 1;
  if ($data) {
    $session->send_data($self->[SID], $body, 1);
    $rq->[SENT_BYTES] += length $body;
  }
  $self->[ENDED] = 'ended';
  my $conn = $self->[PARENT];
  $conn->_output unless $conn->[IN_PROCESS];
  return '';
}

sub _write_head ($self) {
  my $rq = $self->[RQ];
  my $bodiless = $self->_bodiless;
  my ($ok, $length) = $self->_respond($bodiless);
  return $length unless $ok;
  # (the body's bytes go out as they are: DATA frames, ended by END_STREAM)
  @$rq[RESP_MODE, RESP_LEFT] = ($bodiless ? M_NONE : defined $length ? M_LENGTH : M_CLOSE, $length);
  $self->_flush;
  return '';
}

sub _write_trailers ($self, $headers) {
  return '' if $self->[ENDED];
  my ($ok, $err) = $self->[H2SESSION]->send_trailers($self->[SID], $headers);
  return "http.response.trailers: $err\n" unless $ok;
  $self->[ENDED] = 'ended';
  $self->_flush;
  return '';
}

# The body ends: END_STREAM
sub _end_chunks ($self) {
  return if $self->[ENDED];
  $self->[H2SESSION]->send_data($self->[SID], '', 1);
  $self->[ENDED] = 'ended';
  $self->_flush;
}

# Body bytes, event-stream events, WebSocket frames: DATA
sub _write ($self, $data) {
  return if $self->[PHASE] == PAGI::Server::Connection::CLOSED || $self->[ENDED];
  $self->[H2SESSION]->send_data($self->[SID], $data, 0);
  $self->_high if !$self->[ABOVE] && $self->write_buffered >= $self->[WRITE_HIGH];
  $self->_flush;
}

sub write_buffered ($self) {
  return $self->[PHASE] == PAGI::Server::Connection::CLOSED ? 0 : $self->[H2SESSION]->buffered($self->[SID]);
}

# A send's Future: done now, unless this stream's own buffer is backed up (the
# connection releases it: PAGI::Server::Connection::HTTP2::_output)
sub _send_future ($self) {
  return $DONE if $self->write_buffered < $self->[WRITE_HIGH];
  $self->[PARENT]->_wait_drain($self);
  return $self->[DRAIN] //= Future->new;
}

# A response the server makes itself (an error kind of the one table), then the end
# of this stream (the connection goes on)
sub _wire_error ($self, $kind, $headers = []) {
  my ($status, $message) = @{$PAGI::Server::Protocol::Errors::HTTP{$kind} // $PAGI::Server::Protocol::Errors::SERVER{$kind}
    // $PAGI::Server::Protocol::Errors::H2REQ{$kind}};
  $self->[SERVER]->log(warn => $self->_peer . ": HTTP/2 stream $self->[SID]: $status $message");
  my $rq = $self->[RQ];
  if ($rq && !$rq->[HEAD_SENT] && $self->[PHASE] == PAGI::Server::Connection::REQUEST) {
    my $reason = PAGI::Server::Protocol::HTTP1::error_reason($status);
    my $session = $self->[H2SESSION];
    $session->respond($self->[SID], $status, [['content-type', 'text/plain; charset=utf-8'], @$headers], 0);
    $session->send_data($self->[SID], "$reason\n", 1);
    @$rq[HEAD_SENT, STATUS, SENT_BYTES] = (1, $status, length($reason) + 1);
    $self->[ENDED] = 'ended';
    $self->_access_log if $self->[LIVE][ACCESS_LOGGER];
  }
  $self->_close_after_flush;
}

# ---- the end -------------------------------------------------------------------------

# The response is complete and the app has returned: the stream is done on our side
sub _next_request ($self) {
  return if $self->[PHASE] != PAGI::Server::Connection::REQUEST;
  $self->[SERVER]->retire if ++$self->[LIVE][SERVED] == $self->[CFG][MAX_REQUESTS];
  # The request is done: its record goes (a late call of a callback the app kept finds
  # no request, and the stream's end is no disconnect), before the stream goes when
  # the session has closed it already (once our last frame went out)
  if ($self->[EOF]) { $self->[RQ] = undef; return $self->_close }
  $self->_close_after_flush;
  $self->[RQ] = undef;
}

# A response that cannot be finished: the stream is reset (INTERNAL_ERROR), so that the
# client cannot take what it got for the whole response
sub _cut_short ($self) {
  $self->_disconnect('server_error');
  $self->_reset(PAGI::Server::Protocol::HTTP2::H2_INTERNAL_ERROR());
  $self->_close_after_flush;
}

sub _reset ($self, $code) {
  return if $self->[ENDED] eq 'reset' || $self->[PHASE] == PAGI::Server::Connection::CLOSED;
  $self->[H2SESSION]->reset($self->[SID], $code);
  $self->[ENDED] = 'reset';
  $self->_flush;
}

# Our side is done: what was sent ends with END_STREAM (an accepted WebSocket, a
# response started and not ended: the orderly end), a stream with nothing sent is
# cancelled (a request body still coming is then refused by the session: RST_STREAM
# NO_ERROR once the END_STREAM is written, RFC 9113 8.1).
# The stream goes once the session says it has closed (_ended).
sub _close_after_flush ($self, $linger = 0) {
  return if $self->[PHASE] >= PAGI::Server::Connection::CLOSING;
  # (the session has closed the stream already)
  return $self->_close if $self->[EOF];
  $self->[PHASE] = PAGI::Server::Connection::CLOSING;
  my $rq = $self->[RQ];
  if (!$self->[ENDED]) {
    if ($rq && $rq->[HEAD_SENT]) { $self->[H2SESSION]->send_data($self->[SID], '', 1); $self->[ENDED] = 'ended' }
    else { $self->_reset(PAGI::Server::Protocol::HTTP2::H2_CANCEL()) }
  }
  $self->[RQ][REQ] = undef if $rq && !$rq->[APP_RUNNING];
  # (a client that never ends its side: the stream is reset after request_timeout)
  @$self[DEADLINE_KIND, DEADLINE] = ('closing', $self->[LIVE][NOW] + $self->[CFG][REQUEST_TIMEOUT_S]);
  # (_flush, inline: inside a read the connection writes once, at its end)
  my $conn = $self->[PARENT];
  $conn->_output unless $conn->[IN_PROCESS];
}

# The session closed the stream (both sides ended; or reset, with $code)
sub _ended ($self, $code) {
  if (defined $code) {
    $self->[ENDED] = 'reset';
    return $self->_abort('client_closed');
  }
  # Closed normally (our END_STREAM is written) while the app runs, or before the
  # response path has marked its response complete (the last write flushed at once): it
  # goes in _next_request, which counts the request, or at _close_after_flush
  my $rq = $self->[RQ];
  if ($rq && $self->[PHASE] == PAGI::Server::Connection::REQUEST && ($rq->[APP_RUNNING] || !$rq->[COMPLETE])) {
    $self->[EOF] = 1;
    return;
  }
  $self->_close;
}


sub _close ($self) {
  return if $self->[PHASE] == PAGI::Server::Connection::CLOSED;
  $self->_disconnect('client_closed') if $self->[RQ];
  my $conn = $self->[PARENT];
  $self->_reset(PAGI::Server::Protocol::HTTP2::H2_CANCEL()) if !$self->[ENDED] && $conn->_alive;
  $self->[PHASE] = PAGI::Server::Connection::CLOSED;
  if (my $f = delete $self->[DRAIN]) { $f->done }
  # The cycles through the callbacks, the transport and the connection end here; a
  # running app's Future still holds the stream until it finishes
  @$self[RECEIVE, SEND, ON_READ, ON_WRITE, TRANSPORT] = ();
  $self->[RQ][REQ] = undef if $self->[RQ];
  if (my $timers = $self->[TIMERS]) { $self->[LOOP]->unwatch_time($_) for values %$timers }
  $self->[TIMERS] = undef;
  $self->[PARENT] = undef;
  $conn->_stream_gone($self->[SID]);
}

# (a stream has no socket: the connection's tick enforces its deadlines)
sub _tick ($self, $now) {
  return if $self->[PHASE] == PAGI::Server::Connection::CLOSED;
  if ($self->[DEADLINE_KIND] eq 'closing' && $now > $self->[DEADLINE]) {
    $self->_reset(PAGI::Server::Protocol::HTTP2::H2_CANCEL());
    return $self->_close;
  }
  $self->SUPER::_tick($now);
}

# ---- event streams and WebSockets over HTTP/2 ------------------------------------------

package PAGI::Server::Connection::HTTP2::SSE;
use mro 'c3';
our @ISA = ('PAGI::Server::Connection::SSE', 'PAGI::Server::Connection::HTTP2::Stream');

package PAGI::Server::Connection::HTTP2::WebSocket;
use strict;
use warnings;
use experimental 'signatures';
use mro 'c3';
use PAGI::Server::Connection::Fields qw(:fields);
use PAGI::Server::Connection::Request qw(:fields);
our @ISA = ('PAGI::Server::Connection::WebSocket', 'PAGI::Server::Connection::HTTP2::Stream');

# A WebSocket over an HTTP/2 stream (RFC 8441): the extended CONNECT is the handshake
# (no key: Sec-WebSocket-Version 13 is all it must have), 200 accepts it, and the
# frames travel in DATA both ways; the client's END_STREAM is its side's end.

sub _handshake_refusal ($self) {
  my ($version) = map { $_->[1] } grep { $_->[0] eq 'sec-websocket-version' } @{$self->[RQ][REQ]{headers}};
  return ('ws_bad_version', [['sec-websocket-version', '13']]) if ($version // '') ne '13';
  return;
}

sub _write_accept ($self, $headers) {
  my ($ok, $err) = $self->[H2SESSION]->respond($self->[SID], 200, $headers, 0);
  return $err unless $ok;
  $self->[RQ][STATUS] = 200;
  $self->[RQ][HEAD_SENT] = 1;
  $self->_flush;
  return '';
}

sub _write_denial ($self, $status, $headers, $body) {
  my $session = $self->[H2SESSION];
  my ($ok, $err) = $session->respond($self->[SID], $status, $headers, length $body ? 0 : 1);
  return $err unless $ok;
  $session->send_data($self->[SID], $body, 1) if length $body;
  @{$self->[RQ]}[STATUS, HEAD_SENT] = ($status, 1);
  $self->[ENDED] = 'ended';
  $self->_flush;
  return '';
}

# Frames from the client (the window follows what was read while reading goes on)
sub _data ($self, $bytes, $end) {
  $self->[RBUF] .= $bytes;
  $self->_consumed(length $bytes);
  $self->_process_input if length $self->[RBUF];
  $self->_on_eof if $end && $self->[PHASE] != PAGI::Server::Connection::CLOSED;
}

1;

=head1 NAME

PAGI::Server::Connection::HTTP2::Stream - one stream of an HTTP/2 connection

=head1 DESCRIPTION

Internal. A request of a L<PAGI::Server::Connection::HTTP2> connection, served by
the same code as an HTTP/1.1 request (its scope has C<http_version> C<2>): the
stream is a connection object whose protocol hooks give the response to the
connection's session (HEADERS, DATA, trailers, RST_STREAM) instead of writing bytes.
Request bodies are delivered as they come, and the client's flow-control window grows
only by what the application has received. C<PAGI::Server::Connection::HTTP2::SSE>
and C<PAGI::Server::Connection::HTTP2::WebSocket> serve event streams and WebSockets
(RFC 8441) over a stream the same way.

=cut
