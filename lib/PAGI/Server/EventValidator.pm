package PAGI::Server::EventValidator;
use strict;
use warnings;
use experimental 'signatures';
use Carp ();
use Exporter 'import';
use PAGI::Server::Protocol::HTTP1 ();
use PAGI::Server::Protocol::WebSocket ();
use PAGI::Server::Protocol::SSE ();
use PAGI::Server::Protocol::Errors ();

our $VERSION = '0.001';

# What is wrong with an event an application sends, by its own fields (not by when it
# comes: that is the connection's state): the checks PAGI::Server's send paths make,
# once. The connection calls the check of each event type it handles (start_error,
# body_error, ...); upstream's validate_*_send run the same checks for a scope type
# and croak with the message a failed send would carry. Header fields are the codec's
# to judge (check_headers, serialize_trailers), SSE data its formatter's (format_event).

our @EXPORT_OK = qw(validate_http_send validate_websocket_send validate_sse_send send_error
  start_error body_error trailers_error accept_error ws_send_error close_error keepalive_error
  sse_start_error sse_data_error comment_error);

# ---- the checks, one per kind of event; each returns the message or undef --------------

my $NUMBER = qr/\A[0-9]+(?:\.[0-9]+)?\z/;

# A response head (http.response.start, and the denials of a WebSocket and an event
# stream): a status and headers the codec takes (its check_headers, given the status)
sub start_error ($ev, $type = 'http.response.start') {
  my $err = PAGI::Server::Protocol::HTTP1::check_headers($ev->{headers}, $ev->{status});
  return defined $err ? "$type: $err" : undef;
}

# A body: bytes, or a file or an open filehandle (one of the three), a non-negative
# offset and length. (A body of bytes alone passes: the connection checks only the
# others, on its busiest path.)
sub body_error ($ev, $type = 'http.response.body') {
  if (defined $ev->{file} || defined $ev->{fh}) {
    return "$type: only one of body, file and fh" if 1 < grep { defined $ev->{$_} } qw(body file fh);
    return "$type: fh is not an open filehandle" if defined $ev->{fh} && !(ref $ev->{fh} && defined fileno $ev->{fh});
    return "$type: offset and length must be non-negative integers"
      if grep { defined $ev->{$_} && $ev->{$_} !~ /\A[0-9]+\z/ } qw(offset length);
    return undef;
  }
  my $body = $ev->{body};
  return "$type: body must be bytes, not characters"
    if defined $body && utf8::is_utf8($body) && !utf8::downgrade(my $copy = $body, 1);
  return undef;
}

# http.response.trailers: trailer fields the codec takes
sub trailers_error ($ev, @) {
  my ($bytes, $err) = eval { PAGI::Server::Protocol::HTTP1::serialize_trailers($ev->{headers} // []) };
  return undef if defined $bytes;
  return 'http.response.trailers: ' . ($err // PAGI::Server::Protocol::Errors::app_message('bad_shape'));
}

# websocket.accept: its headers and subprotocol as the codec takes header fields
sub accept_error ($ev, @) {
  my $err = PAGI::Server::Protocol::HTTP1::check_headers($ev->{headers});
  $err //= PAGI::Server::Protocol::HTTP1::check_headers([['Sec-WebSocket-Protocol', $ev->{subprotocol}]])
    if defined $ev->{subprotocol};
  return defined $err ? "websocket.accept: $err" : undef;
}

# websocket.send: bytes (bytes indeed) or text, one of them
sub ws_send_error ($ev, @) {
  if (defined $ev->{bytes}) {
    return 'websocket.send: only one of bytes and text' if defined $ev->{text};
    return 'websocket.send: bytes must be bytes, not characters'
      if utf8::is_utf8($ev->{bytes}) && !utf8::downgrade(my $copy = $ev->{bytes}, 1);
    return undef;
  }
  return defined $ev->{text} ? undef : 'websocket.send needs bytes or text';
}

# websocket.close: a code an endpoint may send, a reason of at most 123 bytes
sub close_error ($ev, @) {
  my $code = $ev->{code} // PAGI::Server::Protocol::WebSocket::WS_CLOSE_NORMAL();
  return "websocket.close: invalid code $code"
    unless $code =~ /\A[0-9]+\z/ && PAGI::Server::Protocol::WebSocket::valid_close_code($code);
  my $reason = $ev->{reason} // '';
  utf8::encode($reason);
  return length $reason > 123 ? 'websocket.close: reason longer than 123 bytes' : undef;
}

# websocket.keepalive, sse.keepalive: an interval (and a WebSocket's timeout) in seconds
sub keepalive_error ($ev, $type) {
  return "$type: interval must be a number >= 0" unless ($ev->{interval} // 0) =~ $NUMBER;
  return "$type: timeout must be a number >= 0"
    if $type eq 'websocket.keepalive' && defined $ev->{timeout} && $ev->{timeout} !~ $NUMBER;
  return undef;
}

# sse.start: an integer status, when given; headers the codec takes
sub sse_start_error ($ev, @) {
  return start_error({status => $ev->{status} // 200, headers => $ev->{headers}}, 'sse.start');
}

# sse.send: what the event-stream formatter takes
sub sse_data_error ($ev, @) {
  my ($bytes, $err) = PAGI::Server::Protocol::SSE::format_event($ev);
  return $err;
}

sub comment_error ($ev, @) { defined $ev->{comment} ? undef : 'sse.comment: comment is required' }

sub _no_fields ($ev, $type) { undef }

# ---- the events of each scope type ---------------------------------------------------------

my $denial_body = sub ($ev, $type) {
  my $body = $ev->{body};
  return defined $body && utf8::is_utf8($body) && !utf8::downgrade(my $copy = $body, 1)
    ? "$type: body must be bytes, not characters" : undef;
};

my %CHECKS = (
  http => {
    'http.response.start'    => \&start_error,
    'http.response.body'     => \&body_error,
    'http.response.trailers' => \&trailers_error,
    'http.fullflush'         => \&_no_fields,
  },
  websocket => {
    'websocket.accept'              => \&accept_error,
    'websocket.send'                => \&ws_send_error,
    'websocket.close'               => \&close_error,
    'websocket.keepalive'           => \&keepalive_error,
    'websocket.http.response.start' => \&start_error,
    'websocket.http.response.body'  => $denial_body,
  },
  sse => {
    'sse.start'               => \&sse_start_error,
    'sse.send'                => \&sse_data_error,
    'sse.comment'             => \&comment_error,
    'sse.keepalive'           => \&keepalive_error,
    'sse.close'               => \&_no_fields,
    'sse.http.response.start' => \&start_error,
    'sse.http.response.body'  => \&body_error,
    'http.fullflush'          => \&_no_fields,
  },
);
my %ARTICLE = (http => 'an', websocket => 'a', sse => 'an');

# The message of what is wrong with an event sent in a scope of type $scope (http,
# websocket, sse), or undef; an event type the scope does not have is wrong too
sub send_error ($scope, $ev) {
  my $checks = $CHECKS{$scope} or Carp::croak("PAGI::Server::EventValidator: no scope type '$scope'");
  my $type = ref $ev eq 'HASH' ? $ev->{type} // '' : '';
  my $check = $checks->{$type} or return "unknown event type '$type' for $ARTICLE{$scope} $scope scope";
  return $check->($ev, $type);
}

# ---- upstream's functions: croak with that message ------------------------------------------

sub validate_http_send ($ev)      { _validate(http => $ev) }
sub validate_websocket_send ($ev) { _validate(websocket => $ev) }
sub validate_sse_send ($ev)       { _validate(sse => $ev) }

sub _validate ($scope, $ev) {
  my $err = send_error($scope, $ev);
  Carp::croak($err) if defined $err;
  return 1;
}

1;

=head1 NAME

PAGI::Server::EventValidator - check the events a PAGI application sends

=head1 SYNOPSIS

  use PAGI::Server::EventValidator qw(validate_http_send send_error);

  validate_http_send({type => 'http.response.start', status => 200,
    headers => [['content-type', 'text/plain']]});               # fine: returns 1
  validate_http_send({type => 'http.response.start'});           # croaks:
    # http.response.start: status must be an integer

  my $err = send_error(websocket => {type => 'websocket.send'});
    # "websocket.send needs bytes or text"

=head1 DESCRIPTION

The checks L<PAGI::Server> makes on every event an application sends, by the
event's own fields: a send the server would fail for its fields fails these checks
with the same message, and the other way round. They are the server's own checks,
not a copy (its connections call the functions below), so middleware and tests can
ask the server's question without a server. What depends on when an event comes (a
body before its start, a second C<websocket.close>, C<http.fullflush> without the
extension advertised) is the connection's, and not checked here; nor is whether a
C<file> can be opened.

Header fields are judged by the codec (L<PAGI::Server::Protocol::HTTP1>'s
C<check_headers> and C<serialize_trailers>), event-stream data by its formatter
(L<PAGI::Server::Protocol::SSE>), WebSocket close codes by
L<PAGI::Server::Protocol::WebSocket>.

The server checks events this way in every mode; C<validate_events> (upstream's
name) decides only how a send after the response completed is treated (see
L<PAGI::Server::Config/validate_events>).

=head1 FUNCTIONS

Nothing is exported by default.

=head2 validate_http_send($event), validate_websocket_send($event), validate_sse_send($event)

Upstream's functions: return 1 when the event is one of the scope type's
(C<http.response.start>, C<http.response.body>, C<http.response.trailers>,
C<http.fullflush>; C<websocket.accept>, C<websocket.send>, C<websocket.close>,
C<websocket.keepalive>, C<websocket.http.response.start>,
C<websocket.http.response.body>; C<sse.start>, C<sse.send>, C<sse.comment>,
C<sse.keepalive>, C<sse.close>, C<sse.http.response.start>,
C<sse.http.response.body>, C<http.fullflush>) and its fields are right; croak with
the message otherwise. Unlike upstream's, an event type the scope does not have is
an error, as it is for the server.

=head2 send_error($scope_type, $event)

The same check without the croak: the message, or undef. C<$scope_type> is C<http>,
C<websocket> or C<sse>.

=head2 The checks of each kind of event

Each returns the message or undef; the server's connections call them:
C<start_error($event, $type)> (a response head: C<http.response.start> and the two
denials), C<body_error($event, $type)> (C<http.response.body>,
C<sse.http.response.body>), C<trailers_error>, C<accept_error>, C<ws_send_error>,
C<close_error>, C<keepalive_error($event, $type)>, C<sse_start_error>,
C<sse_data_error>, C<comment_error>.

=head1 SEE ALSO

L<PAGI::Server>, L<PAGI::Server::Connection::Response>, the PAGI specification
(C<PAGI::Spec::Www>).

=cut
