package PAGI::Server::Connection::Fields;
use strict;
use warnings;

our $VERSION = '0.001';

# The fields of a connection object (PAGI::Server::Connection and its WebSocket and
# SSE subclasses), an array record (see PAGI::Server::Record): $conn->[PHASE] is the
# field "phase". A new connection-wide field is a name here. What belongs to one
# request lives in the request record (PAGI::Server::Connection::Request, in the
# field RQ); what belongs to a WebSocket session or an SSE stream, in their own
# records (in PROTO); a TLS session's, in TLS's (in TLS).
use PAGI::Server::Record qw(
  server cfg live loop fh fd client server_addr scope_extra url_scheme
  rbuf wbuf phase eof reading keep linger
  receive send on_read on_write
  deadline deadline_kind wdeadline
  in_process corked wwatch drain above write_high write_low
  tls transport rq proto timers text_warned
  h2c parent sid ended whole h2session
  epoll iomask on_io
);

1;

=head1 NAME

PAGI::Server::Connection::Fields - the fields of a connection object

=head1 DESCRIPTION

Internal. The connection's own fields, set once (C<server>: the server, for its
methods; C<cfg>: the server's options record, L<PAGI::Server::Config>; C<live>: what
the server shares with its connections, L<PAGI::Server::Shared>; C<loop>, C<fh>,
C<fd>, C<client>, C<server_addr>, C<scope_extra>: its scopes are not plain TCP's,
C<url_scheme>: the scopes' C<scheme>), the socket's state and buffers (C<rbuf>, C<wbuf>,
C<phase>, C<eof>, C<reading>, C<keep>, C<linger>), the callbacks made once per
connection (C<receive>, C<send>, C<on_read>, C<on_write>), the deadlines the server's
tick enforces, the write state (C<in_process>, C<corked>, C<wwatch>, C<drain>,
C<above>, and the marks C<write_high> and C<write_low>), C<text_warned> (the
development warning about encoded text was given), and the records it holds: C<tls> (L<PAGI::Server::TLS>), C<transport> (the
C<pagi.transport> object), C<rq> (the current request,
L<PAGI::Server::Connection::Request>), C<proto> (a WebSocket session's or an SSE
stream's record) and C<timers> (the app's keepalive timers). C<h2c>: a plain
connection of a server with C<http2> may still turn out to be HTTP/2 (1: its first
bytes are looked at for the preface; 2: a request may ask for C<Upgrade: h2c>); an HTTP/2 stream (L<PAGI::Server::Connection::HTTP2>) has its
connection in C<parent> (and that connection's codec session in C<h2session>), its
stream id in C<sid>, and in C<ended> whether this side
of it has ended (C<ended>: END_STREAM sent; C<reset>: RST_STREAM). C<epoll>: the loop's Linux::Epoll set
when a plain connection registers there directly (else the loop's C<watch_io>),
C<iomask> what it watches (1 readable, 2 writable), C<on_io> the callback of both.
C<whole>: the
protocol's writer of a whole response (head and body at once) when it is not
HTTP/1.1's, which is inline in the response path. C<use
PAGI::Server::Connection::Fields qw(:fields)> imports the index constants;
C<@PAGI::Server::Connection::Fields::FIELDS> lists the names in index order.

=cut
