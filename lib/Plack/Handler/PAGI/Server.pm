package Plack::Handler::PAGI::Server;
use strict;
use warnings;
use Carp ();

our $VERSION = '0.001';

# plackup -s PAGI::Server: Plack::Runner gives host, port, listen (HOST:PORT, :PORT or a
# socket path), socket and server_ready, and every other --name value as name =>
# value, which go to PAGI::Server as its options (--workers 4, --max-requests 1000,
# --keepalive-timeout 10, ...).
sub new {
  my ($class, %args) = @_;
  return bless {%args}, $class;
}

sub run {
  my ($self, $app) = @_;
  my %args = %$self;
  my $ready = delete $args{server_ready};
  my @listen = @{delete $args{listen} || []};
  my ($host, $port, $socket) = delete @args{qw(host port socket)};
  my %opt = (access_log => undef);    # plackup logs through its AccessLog middleware
  for my $l (@listen) {
    if ($l =~ /\A(.*):([0-9]+)\z/) { push @{$opt{listen}}, (length $1 ? $1 : '0.0.0.0') . ":$2" }
    else { push @{$opt{listen}}, "unix:$l" }
  }
  if (!@listen) {
    $opt{host} = $host // '0.0.0.0';
    $opt{port} = $port // 5000;
  }
  $opt{socket} = $socket if defined $socket && !grep { $_ eq $socket } @listen;
  # plackup's own flags that are not server options
  delete @args{qw(daemonize)};
  require PAGI::Server;
  my $server = PAGI::Server->new(%opt, %args, psgi_app => $app, on_listen => sub {
    my ($s) = @_;
    return unless $ready;
    my ($tcp) = grep { $_->{type} eq 'tcp' } @{$s->listeners};
    $ready->({host => $tcp ? $tcp->{host} : 'localhost', port => $tcp ? $tcp->{port} : 0,
      proto => defined $s->option('ssl_cert') ? 'https' : 'http', server_software => 'PAGI::Server'});
  });
  my $status = $server->run;
  return $status;
}

1;

=head1 NAME

Plack::Handler::PAGI::Server - plackup -s PAGI::Server

=head1 SYNOPSIS

  plackup -s PAGI::Server --port 5000 app.psgi
  plackup -s PAGI::Server --listen :5000 --workers 4 --max-requests 1000 app.psgi

=head1 DESCRIPTION

Serves a PSGI application with L<PAGI::Server> (see L<PAGI::Server::PSGI>).
C<--host>, C<--port>, C<--listen> and C<--socket> are plackup's; any other
C<--name value> is a PAGI::Server option (C<workers>, C<max_requests>,
C<keepalive_timeout>, C<max_body_size>, ...). plackup's AccessLog middleware writes
the access log (PAGI::Server's own is off).

=cut
