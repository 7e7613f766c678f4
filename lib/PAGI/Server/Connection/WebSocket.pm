package PAGI::Server::Connection::WebSocket;
use strict;
use warnings;
use experimental 'signatures';
use Future;
use PAGI::Server::Connection ();
use PAGI::Server::Connection::Fields qw(:fields);
use PAGI::Server::Connection::Request qw(:fields :facts);
use PAGI::Server::ConnectionState qw(:fields);
use PAGI::Server::Protocol::WebSocket;
use PAGI::Server::EventValidator qw(start_error accept_error ws_send_error close_error keepalive_error send_error);
use PAGI::Server::Proxy ();
use PAGI::Server::Config qw(PROXY_HEADERS FORWARDED_TRUST MAX_RECEIVE_QUEUE WARN_ENCODED WS_IDLE_TIMEOUT
  WS_CLOSE_TIMEOUT MAX_WS_MESSAGE_SIZE WS_FRAME_LIMIT WS_DEFLATE);
use PAGI::Server::Shared qw(NOW ACCESS_LOGGER);
our @ISA = ('PAGI::Server::Connection');

our $VERSION = '0.001';

# A connection after a WebSocket upgrade request: the handshake (completed only when
# the app accepts), then RFC 6455 frames through PAGI::Server::Protocol::WebSocket.

# The session's record, in the connection's field PROTO
use PAGI::Server::Record qw(
  state         ws_connected  inbox         connect_sent
  answered      deny          denied        closed_with
  msg_op        msg           msg_valid     msg_z
  ping_interval ping_timeout
  deflate       deflate_offer extensions
);
# state: handshake (the app has not answered), open, closing (our Close sent), closed.
# ws_connected: the app may still receive; inbox: messages it has not received yet;
# answered: accepted or refused; deny: a denial response being built, denied: sent;
# closed_with: {code, reason} for websocket.disconnect; msg_op, msg: the message being
# reassembled (msg_valid: how much of a text message is checked UTF-8; msg_z: it is
# compressed); ping_interval, ping_timeout: websocket.keepalive; deflate: the
# permessage-deflate context once accepted, deflate_offer: [params, response value]
# until then; extensions: the scope's (the agreed parameters are shown there).

BEGIN {
  *parse_frame = \&PAGI::Server::Protocol::WebSocket::parse_frame;
  *build_frame = \&PAGI::Server::Protocol::WebSocket::build_frame;
  *utf8_check  = \&PAGI::Server::Protocol::WebSocket::utf8_check;
  # The opcode constants are the codec facade's own
  no strict 'refs';
  *$_ = \&{"PAGI::Server::Protocol::WebSocket::$_"}
    for qw(WS_CONTINUATION WS_TEXT WS_BINARY WS_CLOSE WS_PING WS_PONG WS_CLOSE_NORMAL WS_CLOSE_GOING_AWAY
    WS_CLOSE_NO_STATUS WS_CLOSE_ABNORMAL WS_CLOSE_TOO_BIG WS_CLOSE_INTERNAL_ERROR);
}
# The connection's shared done Future (see PAGI::Server::Connection::Response)
our $DONE = $PAGI::Server::Connection::DONE;
use constant DENIED_ERROR => "websocket: the handshake was denied (websocket.http.response); no more events\n";

# Takes over a connection whose request (already its request record) asked for an
# upgrade to WebSocket, and calls the app with a websocket scope
sub take_over ($class, $conn, $req) {
  $conn->[KEEP] = 0;
  # (asked of the class taking over: the connection is not one of it yet)
  if (my @refusal = $class->can('_handshake_refusal')->($conn)) { return $conn->_wire_error(@refusal) }
  my $self = bless $conn, $class;
  my $ws = $self->[PROTO] = [];
  @$ws[STATE, WS_CONNECTED, INBOX, MSG] = ('handshake', 1, [], '');
  $self->_dispatch_send;
  # proxy_headers: a trusted proxy's forwarded headers, read here rather than by the
  # application's wrapper (PAGI::Server::_wrap_app), so that the request, which the
  # access log reads, has them too
  my $cfg = $self->[CFG];
  PAGI::Server::Proxy::forwarded($cfg->[FORWARDED_TRUST], $req)
    if $cfg->[PROXY_HEADERS] && PAGI::Server::Proxy::trusts($cfg->[FORWARDED_TRUST], $req->{client} && $req->{client}[0]);
  # (a copy: the request keeps its method for the access log)
  my $scope = {%$req, type => 'websocket'};
  delete $scope->{method};
  # (the request's scheme: TLS, or what a trusted proxy said)
  $scope->{scheme} = $req->{scheme} eq 'https' ? 'wss' : 'ws';
  $scope->{subprotocols} = [];
  for my $h (@{$req->{headers}}) {
    next unless $h->[0] eq 'sec-websocket-protocol';
    push @{$scope->{subprotocols}}, grep { length } map { s/\A\s+|\s+\z//gr } split /,/, $h->[1];
  }
  # Its own extensions: tls, if any, and the denial (not HTTP's fullflush)
  $scope->{extensions} = {($scope->{extensions}{tls} ? (tls => $scope->{extensions}{tls}) : ()),
    'websocket.http.response' => {}};
  $self->_offer_deflate($scope, $req) if $conn->[CFG][WS_DEFLATE];
  $self->_call_app($scope);
}

# permessage-deflate (RFC 7692): the first offer we can honour is chosen now, so the
# scope can show it; it is agreed when the app accepts
sub _offer_deflate ($self, $scope, $req) {
  my @offers = map { $_->[1] } grep { $_->[0] eq 'sec-websocket-extensions' } @{$req->{headers}};
  return unless @offers;
  my ($params, $value) = PAGI::Server::Protocol::WebSocket::negotiate_deflate(\@offers, $self->[CFG][WS_DEFLATE]);
  return unless $params;
  $self->[PROTO][DEFLATE_OFFER] = [$params, $value];
  $scope->{extensions}{'permessage-deflate'} = {map { $_ => $params->{$_} }
    qw(server_no_context_takeover client_no_context_takeover server_max_window_bits client_max_window_bits)};
  $self->[PROTO][EXTENSIONS] = $scope->{extensions};
}

# ---- events from the app -----------------------------------------------------------

sub _receive ($self) {
  if (!$self->[PROTO][CONNECT_SENT]) {
    $self->[PROTO][CONNECT_SENT] = 1;
    return PAGI::Server::Future::ready({type => 'websocket.connect'});
  }
  my $inbox = $self->[PROTO][INBOX];
  if (@$inbox) {
    my $ev = shift @$inbox;
    $self->_resume_read if !$self->[READING] && @$inbox < $self->[CFG][MAX_RECEIVE_QUEUE]
      && $self->[PROTO][STATE] eq 'open';
    return PAGI::Server::Future::ready($ev);
  }
  # After a denial there is no websocket.disconnect (PAGI spec): receiving is a mistake
  return Future->fail(DENIED_ERROR) if $self->[PROTO][DENIED];
  return PAGI::Server::Future::ready($self->_disconnect_event) unless $self->[PROTO][WS_CONNECTED];
  return $self->[RQ][RECV_WAIT] //= Future->new;
}

sub _disconnect_event ($self) {
  my $d = $self->[PROTO][CLOSED_WITH] || {code => WS_CLOSE_ABNORMAL, reason => 'client_closed'};
  return {type => 'websocket.disconnect', code => $d->{code}, reason => $d->{reason}};
}

sub _send ($self, $ev) {
  my $type = ref $ev eq 'HASH' ? $ev->{type} // '' : '';
  my $state = $self->[PROTO][STATE];
  if ($type eq 'websocket.send') {
    return $DONE unless $self->[PROTO][WS_CONNECTED];
    return Future->fail("websocket.send before websocket.accept\n") if $state eq 'handshake';
    return Future->fail("websocket.send after websocket.close\n") if $state ne 'open';
    my ($op, $data);
    if (defined $ev->{text} && !defined $ev->{bytes}) {
      # (text alone passes every check of its fields: the usual case skips them)
      $data = $ev->{text};
      $self->_check_text('websocket.send text', $data) if $self->[CFG][WARN_ENCODED];
      utf8::encode($data);
      $op = WS_TEXT;
    }
    else {
      # Its fields (EventValidator's ws_send_error): then it is bytes alone, as bytes
      if (defined(my $err = ws_send_error($ev))) { return Future->fail("$err\n") }
      $data = $ev->{bytes};
      utf8::downgrade($data, 1);
      $op = WS_BINARY;
    }
    my $z = $self->[PROTO][DEFLATE];
    $self->_write($z ? build_frame($op, $z->compress_message($data), 1, 1) : build_frame($op, $data, 1));
    $self->[DEADLINE] = $self->[LIVE][NOW] + $self->[CFG][WS_IDLE_TIMEOUT]
      if $self->[DEADLINE_KIND] eq 'ws_idle';
    return $self->_send_future;
  }
  if ($type eq 'websocket.accept') {
    # Checked first: after a denial or refusal the connection is gone, but accepting
    # then is still the app's mistake
    return Future->fail("websocket.accept: the handshake is already answered\n")
      if $self->[PROTO][ANSWERED] || $self->[PROTO][DENY];
    return $DONE unless $self->[PROTO][WS_CONNECTED];
    return $self->_accept($ev);
  }
  if ($type eq 'websocket.close') {
    if ($state eq 'handshake') {
      return $DONE unless $self->[PROTO][WS_CONNECTED];
      return Future->fail("websocket.close after a denial response started\n") if $self->[PROTO][DENY];
      # Closing before accepting refuses the handshake
      $self->[PROTO][ANSWERED] = 1;
      $self->[PROTO][STATE] = 'closed';
      $self->[PROTO][WS_CONNECTED] = 0;
      $self->_wire_error('ws_refused');
      return $DONE;
    }
    return $DONE unless $self->[PROTO][WS_CONNECTED];
    return Future->fail("websocket.close sent twice\n") if $state ne 'open';
    if (defined(my $err = close_error($ev))) { return Future->fail("$err\n") }
    my $reason = $ev->{reason} // '';
    utf8::encode($reason);
    $self->_send_close($ev->{code} // WS_CLOSE_NORMAL, $reason);
    return $DONE;
  }
  if ($type eq 'websocket.keepalive') {
    return $DONE unless $self->[PROTO][WS_CONNECTED];
    if (defined(my $err = keepalive_error($ev, $type))) { return Future->fail("$err\n") }
    $self->[PROTO][PING_INTERVAL] = $ev->{interval} // 0;
    $self->[PROTO][PING_TIMEOUT]  = $ev->{timeout};
    $self->_keepalive;
    return $DONE;
  }
  if ($type eq 'websocket.http.response.start' || $type eq 'websocket.http.response.body') {
    # Denial events after accept are ignored (PAGI spec)
    return $DONE if $state ne 'handshake' || !$self->[PROTO][WS_CONNECTED];
    return $self->_deny($type, $ev);
  }
  return Future->fail(send_error(websocket => $ev) . "\n");
}

sub _accept ($self, $ev) {
  my @headers;
  if (defined(my $proto = $ev->{subprotocol})) {
    push @headers, ['Sec-WebSocket-Protocol', $proto];
  }
  if (defined(my $err = accept_error($ev))) { return Future->fail("$err\n") }
  my $extra = $ev->{headers} // [];
  my $offer = $self->[PROTO][DEFLATE_OFFER];
  # (an app that answers Sec-WebSocket-Extensions itself keeps us out of it)
  $offer = undef if $offer && grep { lc $_->[0] eq 'sec-websocket-extensions' } @$extra;
  push @headers, ['Sec-WebSocket-Extensions', $offer->[1]] if $offer;
  if (my $err = $self->_write_accept([@headers, @$extra])) { return Future->fail("websocket.accept: $err\n") }
  if (my $o = delete $self->[PROTO][DEFLATE_OFFER]) {
    if ($offer) { $self->[PROTO][DEFLATE] = PAGI::Server::Protocol::WebSocket::new_deflate($o->[0]) }
    else        { delete $self->[PROTO][EXTENSIONS]{'permessage-deflate'} }
  }
  $self->[PROTO][ANSWERED] = 1;
  $self->[PROTO][STATE] = 'open';
  if (my $idle = $self->[CFG][WS_IDLE_TIMEOUT]) {
    # ws_idle_timeout: no frame either way for that long closes the connection
    @$self[DEADLINE_KIND, DEADLINE] = ('ws_idle', $self->[LIVE][NOW] + $idle);
  }
  $self->_access_log if $self->[LIVE][ACCESS_LOGGER];
  $self->_process_input if length $self->[RBUF];
  return $DONE;
}

# The protocol hooks of a WebSocket over HTTP/1.1 (over HTTP/2: its stream's own,
# PAGI::Server::Connection::HTTP2): why the handshake is refused (an error kind and its
# headers, or nothing), the accepting response, a denial response.

sub _handshake_refusal ($self) {
  my $facts = $self->[RQ][FACTS];
  return ('ws_bad_version', [['Sec-WebSocket-Version', '13']])
    if !defined $facts->[FACT_WS_VERSION] || $facts->[FACT_WS_VERSION] ne '13';
  return ('ws_bad_handshake') if !PAGI::Server::Protocol::WebSocket::valid_key($facts->[FACT_WS_KEY])
    || $facts->[FACT_CHUNKED] || $facts->[FACT_CONTENT_LENGTH];
  return;
}

# 101 Switching Protocols (the codec drops any Connection field of the app's and
# writes Connection: Upgrade); returns an error message or ''
sub _write_accept ($self, $headers) {
  my ($bytes, $err) = PAGI::Server::Protocol::HTTP1::serialize_response(101, [['Upgrade', 'websocket'],
    ['Sec-WebSocket-Accept', PAGI::Server::Protocol::WebSocket::accept_key($self->[RQ][FACTS][FACT_WS_KEY])],
    @$headers], PAGI::Server::Protocol::HTTP1::F_UPGRADE, undef);
  return $err unless defined $bytes;
  $self->[RQ][STATUS] = 101;
  $self->_write($bytes);
  return '';
}

# The denial response, closing the connection; returns an error message or ''
sub _write_denial ($self, $status, $headers, $body) {
  my ($bytes, $err) = PAGI::Server::Protocol::HTTP1::serialize_response($status, $headers,
    PAGI::Server::Protocol::HTTP1::F_CLOSE, $body);
  return $err unless defined $bytes;
  $self->_write($bytes);
  return '';
}

# websocket.http.response.*: an HTTP response instead of the handshake, then close
sub _deny ($self, $type, $ev) {
  if ($type eq 'websocket.http.response.start') {
    return Future->fail("$type sent twice\n") if $self->[PROTO][DENY];
    if (defined(my $err = start_error($ev, $type))) { return Future->fail("$err\n") }
    $self->[PROTO][DENY] = {status => $ev->{status}, headers => $ev->{headers} // [], body => ''};
    return $DONE;
  }
  my $deny = $self->[PROTO][DENY] or return Future->fail("$type before websocket.http.response.start\n");
  if (defined(my $err = send_error(websocket => $ev))) { return Future->fail("$err\n") }
  my $body = $ev->{body} // '';
  utf8::downgrade($body, 1);
  $deny->{body} .= $body;
  return $DONE if $ev->{more} // $ev->{more_body};
  my $err = $self->_write_denial($deny->{status}, $deny->{headers}, $deny->{body});
  return Future->fail("websocket.http.response.start: $err\n") if $err;
  $self->[RQ][STATUS] = $deny->{status};
  $self->[RQ][SENT_BYTES] = length $deny->{body};
  $self->[PROTO][STATE] = 'closed';
  $self->[PROTO][WS_CONNECTED] = 0;
  $self->[PROTO][DENIED] = 1;
  if (my $f = delete $self->[RQ][RECV_WAIT]) { $f->fail(DENIED_ERROR) }
  $self->_access_log if $self->[LIVE][ACCESS_LOGGER];
  $self->_close_after_flush(1);
  return $DONE;
}

sub _send_close ($self, $code, $reason = '') {
  $self->[PROTO][STATE] = 'closing';
  $self->_write(build_frame(WS_CLOSE, $code == WS_CLOSE_NO_STATUS ? '' : pack('n', $code) . $reason, 1));
  # The peer has this long to answer our Close before we drop the connection
  $self->[DEADLINE_KIND] = 'closing';
  $self->[DEADLINE]      = $self->[LIVE][NOW] + $self->[CFG][WS_CLOSE_TIMEOUT];
}

# ---- frames from the peer ------------------------------------------------------------

sub _process_input ($self) {
  my $cfg = $self->[CFG];
  my $max = $cfg->[MAX_WS_MESSAGE_SIZE];
  my $frame_max = $cfg->[WS_FRAME_LIMIT];
  while (length $self->[RBUF]) {
    my $state = $self->[PROTO][STATE];
    return if $state eq 'handshake' || $state eq 'closed';
    my $z = $self->[PROTO][DEFLATE];
    my ($frame, $consumed) = parse_frame($self->[RBUF], $frame_max, $z ? 1 : 0);
    return unless defined $frame;
    return $self->_fail_connection($frame->{error}) if ref $frame eq 'HASH';
    substr($self->[RBUF], 0, $consumed, '');
    $self->[DEADLINE] = $self->[LIVE][NOW] + $cfg->[WS_IDLE_TIMEOUT] if $self->[DEADLINE_KIND] eq 'ws_idle';
    my ($fin, $op, $payload, $rsv1) = @$frame;
    if ($op >= WS_CLOSE) {
      if ($op == WS_PING) { $self->_write(build_frame(WS_PONG, $payload, 1)) if $state eq 'open'; next }
      if ($op == WS_PONG) { $self->_timer('pong'); next }
      return $self->_on_close_frame($payload);
    }
    next if $state ne 'open';    # data after our Close is dropped
    if ($op == WS_CONTINUATION) {
      return $self->_fail_connection('continuation') unless defined $self->[PROTO][MSG_OP];
    }
    else {
      return $self->_fail_connection('interleaved') if defined $self->[PROTO][MSG_OP];
      @{$self->[PROTO]}[MSG_OP, MSG, MSG_VALID, MSG_Z] = ($op, '', 0, $rsv1);
    }
    if ($self->[PROTO][MSG_Z]) {
      # (inflating stops once the message passes the limit: 1009, never a bomb in memory)
      $payload = $z->decompress_message($payload, $max, $fin);
      return $self->_fail_connection($payload->{error}) if ref $payload;
    }
    $self->[PROTO][MSG] .= $payload;
    return $self->_fail_connection('message_too_large') if length $self->[PROTO][MSG] > $max;
    if ($self->[PROTO][MSG_OP] == WS_TEXT) {
      # Invalid UTF-8 fails as early as it shows, even across fragments. Only the
      # bytes from the last complete character on are checked again: rechecking the
      # whole message per fragment is quadratic (a CPU denial of service)
      my $ok = utf8_check(substr($self->[PROTO][MSG], $self->[PROTO][MSG_VALID]));
      return $self->_fail_connection('bad_utf8') if !$ok || $fin && $ok != 1;
      my $len = length $self->[PROTO][MSG];
      if ($ok == 2) {
        # Valid, but ending inside a character: it starts at the last lead byte
        $len-- while $len > 0 && (ord(substr($self->[PROTO][MSG], $len - 1, 1)) & 0xc0) == 0x80;
        $len--;
      }
      $self->[PROTO][MSG_VALID] = $len;
    }
    next unless $fin;
    my $msg = $self->[PROTO][MSG];
    my $ev;
    if ($self->[PROTO][MSG_OP] == WS_TEXT) {
      utf8::decode($msg);
      $ev = {type => 'websocket.receive', text => $msg};
    }
    else { $ev = {type => 'websocket.receive', bytes => $msg} }
    $self->[PROTO][MSG_OP] = undef;
    $self->[PROTO][MSG]    = '';
    if (my $f = delete $self->[RQ][RECV_WAIT]) { $f->done($ev) }
    else {
      push @{$self->[PROTO][INBOX]}, $ev;
      # max_receive_queue messages unread: stop reading (TCP pushes back on the peer)
      $self->_pause_read if @{$self->[PROTO][INBOX]} >= $self->[CFG][MAX_RECEIVE_QUEUE];
    }
  }
}

sub _on_close_frame ($self, $payload) {
  my ($code, $reason) = PAGI::Server::Protocol::WebSocket::parse_close($payload);
  return $self->_fail_connection($reason) unless defined $code;
  # Echo the Close (RFC 6455 5.5.1) unless this answers ours
  $self->_write(build_frame(WS_CLOSE, $code == WS_CLOSE_NO_STATUS ? '' : pack('n', $code), 1))
    if $self->[PROTO][STATE] eq 'open';
  $self->_ws_disconnect($code, $reason);
  $self->_close_after_flush;
}

# A protocol violation (a kind of the error table's ws or wsclose rows): send a Close
# with its code, tell the app, close. A message over the limit shows as 1006 to the
# app (PAGI spec).
sub _fail_connection ($self, $kind) {
  my ($code, $why) = PAGI::Server::Protocol::WebSocket::close_error($kind);
  $self->[SERVER]->log(info => "websocket closed with $code: $why");
  $self->_write(build_frame(WS_CLOSE, pack('n', $code), 1)) if $self->[PROTO][STATE] eq 'open';
  $self->_ws_disconnect($code == WS_CLOSE_TOO_BIG ? WS_CLOSE_ABNORMAL : $code, 'protocol_error');
  $self->_close_after_flush(1);
}

sub _ws_disconnect ($self, $code, $reason) {
  return unless $self->[PROTO][WS_CONNECTED];
  $self->[PROTO][WS_CONNECTED] = 0;
  $self->[PROTO][STATE] = 'closed';
  $self->[PROTO][CLOSED_WITH] = {code => $code, reason => $reason};
  if (my $f = delete $self->[RQ][RECV_WAIT]) { $f->done($self->_disconnect_event) }
  if (my $f = delete $self->[DRAIN])     { $f->done }
}

# Abnormal end (EOF, IO error, timeout, shutdown): 1006 with the reason token
sub _disconnect ($self, $reason, @) { $self->_ws_disconnect(WS_CLOSE_ABNORMAL, $reason) }

sub _on_eof ($self) {
  $self->[EOF] = 1;
  $self->_pause_read;
  $self->_ws_disconnect(WS_CLOSE_ABNORMAL, 'client_closed');
  $self->_close;
}

sub _app_done ($self, $f) {
  $self->[RQ][APP_RUNNING] = 0;
  delete $self->[RQ][APP_FUTURE];
  my $error = $f->is_failed ? ($f->failure)[0] : undef;
  if (defined $error) {
    chomp(my $e = "$error");
    $self->[SERVER]->log(error => "application error: $e");
  }
  my $state = $self->[PROTO][STATE];
  if ($state eq 'handshake' && $self->[PROTO][WS_CONNECTED]) {
    # Returning without accepting refuses the connection (403); dying, or leaving a
    # denial response unfinished (nothing of it is written yet), is a 500
    my $failed = defined $error || $self->[PROTO][DENY];
    $self->[SERVER]->log(error => 'application finished without completing its denial response')
      if $self->[PROTO][DENY] && !defined $error;
    $self->[PROTO][WS_CONNECTED] = 0;
    $self->[PROTO][STATE] = 'closed';
    return $self->_wire_error($failed ? 'app_error' : 'ws_refused');
  }
  if ($state eq 'open') {
    $self->_send_close(defined $error ? WS_CLOSE_INTERNAL_ERROR : WS_CLOSE_NORMAL);
    return;
  }
  $self->_close_after_flush if $self->[PHASE] == PAGI::Server::Connection::REQUEST && !$self->[PROTO][WS_CONNECTED]
    && $state ne 'closing';
}

# websocket.keepalive: a ping every interval (0 = off; the last one given wins);
# with a timeout, a pong must come within it after the first unanswered ping
sub _keepalive ($self) {
  if (!$self->[PROTO][PING_INTERVAL]) {
    $self->_timer('ka');
    return $self->_timer('pong');
  }
  $self->_timer(ka => $self->[PROTO][PING_INTERVAL], sub {
    return unless $self->[PROTO][STATE] eq 'open';
    $self->_write(build_frame(WS_PING, '', 1));
    $self->_timer(pong => $self->[PROTO][PING_TIMEOUT], sub {
      return unless $self->[PROTO][STATE] eq 'open';
      $self->_ws_disconnect(WS_CLOSE_ABNORMAL, 'keepalive_timeout');
      $self->_close;
    }) if $self->[PROTO][PING_TIMEOUT] && !$self->_has_timer('pong');
    $self->_keepalive;
  });
}

sub _tick ($self, $now) {
  if ($self->[DEADLINE_KIND] eq 'ws_idle') {
    return if $now <= $self->[DEADLINE];
    # Idle too long: a Close (going away), the app sees 1006 idle_timeout
    $self->[SERVER]->log(info => "websocket idle for $self->[CFG][WS_IDLE_TIMEOUT] s (ws_idle_timeout): closing");
    $self->_write(build_frame(WS_CLOSE, pack('n', WS_CLOSE_GOING_AWAY), 1)) if $self->[PROTO][STATE] eq 'open';
    $self->_ws_disconnect(WS_CLOSE_ABNORMAL, 'idle_timeout');
    return $self->_close_after_flush(1);
  }
  if (($self->[DEADLINE_KIND] // '') eq 'closing' && $self->[PHASE] == PAGI::Server::Connection::REQUEST
    && $now > $self->[DEADLINE]) {
    # No Close came back in time
    $self->_ws_disconnect(WS_CLOSE_ABNORMAL, 'client_closed');
    return $self->_close;
  }
  $self->SUPER::_tick($now);
}

# A retiring worker's soft stop is the usual one for a session: Close 1001
sub _soft_stop ($self) { $self->_shutdown }

sub _shutdown ($self, $force = 0) {
  if ($force) {
    $self->_ws_disconnect(WS_CLOSE_ABNORMAL, 'server_shutdown');
    return $self->_close;
  }
  # Going away (RFC 6455 7.4.1)
  $self->_send_close(WS_CLOSE_GOING_AWAY) if $self->[PROTO][STATE] eq 'open';
}

1;

=head1 NAME

PAGI::Server::Connection::WebSocket - a PAGI::Server connection speaking RFC 6455

=head1 DESCRIPTION

Internal. Takes over a L<PAGI::Server::Connection> whose request asked for a
WebSocket upgrade: answers C<websocket.connect>, completes the handshake only on
C<websocket.accept> (C<websocket.close> first gives 403, C<websocket.http.response.*>
sends that HTTP response instead, after which C<$receive> fails rather than giving a
C<websocket.disconnect>; a wrong C<Sec-WebSocket-Version> gives 426), then
reassembles fragmented messages, answers pings, echoes the close handshake, and
closes with 1002 (framing), 1007 (invalid UTF-8) or 1009 (too large) on bad input.
permessage-deflate (RFC 7692) is negotiated when the client offers it (the scope's
C<extensions> then hold C<permessage-deflate>): compressed messages are inflated frame
by frame within the message limit (1007 for a corrupt stream), and the server's
messages are compressed.

=cut
