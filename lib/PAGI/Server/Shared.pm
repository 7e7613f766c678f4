package PAGI::Server::Shared;
use strict;
use warnings;

our $VERSION = '0.001';

# What a server shares with its connections while it serves: an array record (see
# PAGI::Server::Record) that the server makes once and alone changes; connections read
# it (the options they read are in the server's checked options record,
# PAGI::Server::Config). run_app: the application as it is called (wrapped for PSGI or
# scope_loop); io_loop: the loop; epoll_set: its Linux::Epoll set when the loop is
# IO::Async::Loop::Epoll (PAGI::Server::Loop::epoll_of: plain connections register
# there directly), else undef; app_state: lifespan's state, copied into each scope;
# stopping, soft_stop: a graceful stop is under way (soft: a retiring worker's, which
# keeps idle keep-alive connections for one more request); served: requests served by
# this process; now: the coarse clock of the deadlines, refreshed by the server's
# once-a-second tick; access_logger: the access log (PAGI::Server::AccessLog) or undef.
use PAGI::Server::Record qw(run_app io_loop epoll_set app_state stopping soft_stop served now access_logger);

1;

=head1 NAME

PAGI::Server::Shared - what a server shares with its connections

=head1 DESCRIPTION

Internal. The record (C<run_app>, C<io_loop>, C<epoll_set>, C<app_state>, C<stopping>, C<soft_stop>,
C<served>, C<now>, C<access_logger>) that L<PAGI::Server> keeps and its connections
read: the only server state a connection sees, besides the options record
(L<PAGI::Server::Config>) and the server's methods (C<log>, C<connection_closed>,
C<retire>).

=cut
