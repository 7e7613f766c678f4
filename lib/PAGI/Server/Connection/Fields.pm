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
  server cfg live loop fh fd client server_addr scope_extra
  rbuf wbuf phase eof reading keep linger
  receive send on_read on_write
  deadline deadline_kind wdeadline
  in_process corked wwatch drain above write_high write_low
  tls transport rq proto timers text_warned
);

1;

=head1 NAME

PAGI::Server::Connection::Fields - the fields of a connection object

=head1 DESCRIPTION

Internal. The connection's own fields, set once (C<server>: the server, for its
methods; C<cfg>: the server's options record, L<PAGI::Server::Config>; C<live>: what
the server shares with its connections, L<PAGI::Server::Shared>; C<loop>, C<fh>,
C<fd>, C<client>, C<server_addr>, C<scope_extra>: its scopes are not plain TCP's), the socket's state and buffers (C<rbuf>, C<wbuf>,
C<phase>, C<eof>, C<reading>, C<keep>, C<linger>), the callbacks made once per
connection (C<receive>, C<send>, C<on_read>, C<on_write>), the deadlines the server's
tick enforces, the write state (C<in_process>, C<corked>, C<wwatch>, C<drain>,
C<above>, and the marks C<write_high> and C<write_low>), C<text_warned> (the
development warning about encoded text was given), and the records it holds: C<tls> (L<PAGI::Server::TLS>), C<transport> (the
C<pagi.transport> object), C<rq> (the current request,
L<PAGI::Server::Connection::Request>), C<proto> (a WebSocket session's or an SSE
stream's record) and C<timers> (the app's keepalive timers). C<use
PAGI::Server::Connection::Fields qw(:fields)> imports the index constants;
C<@PAGI::Server::Connection::Fields::FIELDS> lists the names in index order.

=cut
