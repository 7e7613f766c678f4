use strict;
use warnings;
use experimental 'signatures';
use Test::More;
use Errno qw(EAGAIN);
use Fcntl qw(F_GETFL F_GETFD O_NONBLOCK FD_CLOEXEC);
use File::Temp ();
use IO::Socket::IP;
use IO::Socket::UNIX;
use Socket qw(IPPROTO_TCP TCP_NODELAY SOCK_STREAM);
use PAGI::Server::Protocol::HTTP1::PP;

# accept_socket, the codec's accept (doc/codec.md): a connection taken from a listening
# socket comes non-blocking and close-on-exec, with TCP_NODELAY when asked, with its
# peer's address as accept returned it and (asked) its own, or () with $! set. Both
# backends, side by side: the same connections give the same addresses.

my %ACCEPT = (pp => \&PAGI::Server::Protocol::HTTP1::PP::accept_socket);
if (eval { require PAGI::Server::Protocol::HTTP1::XS; 1 }) {
  $ACCEPT{xs} = \&PAGI::Server::Protocol::HTTP1::XS::accept_socket;
}
else { diag 'the XS backend is not built: PP alone' }

sub nonblocking_listener (%args) {
  my $l = IO::Socket::IP->new(Listen => 16, %args) or return;
  $l->blocking(0);
  return $l;
}

for my $b (sort keys %ACCEPT) {
  my $accept = $ACCEPT{$b};
  subtest "$b: TCP" => sub {
    my $l = nonblocking_listener(LocalHost => '127.0.0.1', LocalPort => 0) or return fail("listen: $@");
    ok(!(my @none = $accept->($l, 1, 0)), 'nobody waiting: nothing');
    is($! + 0, EAGAIN, '... and $! is EAGAIN');
    my $c = IO::Socket::IP->new(PeerHost => '127.0.0.1', PeerPort => $l->sockport) or return fail("connect: $@");
    my ($fh, @ends) = $accept->($l, 1, 1);
    ok($fh, 'a connection');
    is_deeply(\@ends, ['127.0.0.1', $c->sockport, '127.0.0.1', $l->sockport], 'peer and local ends');
    ok(fcntl($fh, F_GETFL, 0) & O_NONBLOCK, 'non-blocking');
    ok(fcntl($fh, F_GETFD, 0) & FD_CLOEXEC, 'close-on-exec');
    is(unpack('i', getsockopt($fh, IPPROTO_TCP, TCP_NODELAY)), 1, 'TCP_NODELAY');
    syswrite $c, 'ping';
    my $got = '';
    for (1 .. 100) { last if sysread($fh, $got, 16, length $got) && length $got == 4; select(undef, undef, undef, 0.01) }
    is($got, 'ping', 'sysread');
    is(syswrite($fh, 'pong'), 4, 'syswrite');
    sysread($c, my $back, 16);
    is($back, 'pong', '... the peer reads it');
    ok(close($fh), 'close');
    is(sysread($c, my $eof, 16), 0, '... the peer sees the end');
    my $c2 = IO::Socket::IP->new(PeerHost => '127.0.0.1', PeerPort => $l->sockport);
    my ($fh2, @peer) = $accept->($l, 0, 0);
    is(scalar @peer, 2, 'without want_local: the peer alone');
    is(unpack('i', getsockopt($fh2, IPPROTO_TCP, TCP_NODELAY)), 0, 'without nodelay: Nagle stays on');
  };

  subtest "$b: IPv6" => sub {
    my $l = nonblocking_listener(LocalHost => '::1', LocalPort => 0) or plan skip_all => 'no IPv6 loopback';
    my $c = IO::Socket::IP->new(PeerHost => '::1', PeerPort => $l->sockport) or return fail("connect: $@");
    my ($fh, @ends) = $accept->($l, 1, 1);
    is_deeply(\@ends, ['::1', $c->sockport, '::1', $l->sockport], 'peer and local ends');
  };

  subtest "$b: Unix socket" => sub {
    my $dir = File::Temp->newdir;
    my $l = IO::Socket::UNIX->new(Local => "$dir/s", Listen => 16, Type => SOCK_STREAM) or return fail("listen: $!");
    $l->blocking(0);
    my $c = IO::Socket::UNIX->new(Peer => "$dir/s", Type => SOCK_STREAM) or return fail("connect: $!");
    my ($fh, @ends) = $accept->($l, 0, 1);
    ok($fh, 'a connection');
    is_deeply(\@ends, [undef, undef, "$dir/s", undef], 'no peer address; the path as the local end');
    ok(fcntl($fh, F_GETFL, 0) & O_NONBLOCK, 'non-blocking');
  };
}

subtest 'not a listening socket: () and $!' => sub {
  for my $b (sort keys %ACCEPT) {
    open(my $null, '<', '/dev/null') or die;
    ok(!(my @r = $ACCEPT{$b}->($null, 0, 0)), "$b: nothing");
    ok($! != 0, "$b: \$! says why ($!)");
  }
};

done_testing;
