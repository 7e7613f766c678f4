package PAGI::Test::Load;
use strict;
use warnings;
use experimental 'signatures';
use Exporter 'import';
use Errno qw(EAGAIN EWOULDBLOCK EINTR EINPROGRESS ECONNRESET);
use IO::Socket::IP;
use IO::Socket::UNIX;
use JSON::PP ();
use POSIX ();
use Socket qw(SOCK_STREAM);
use Time::HiRes ();
use PAGI::Test::Server ();

# A bounded load generator for the process-model tests: forked client processes, each
# driving many keep-alive connections from one select() loop. Every request has its
# own id; the app answers "ok /r/ID ..." with an x-pid header naming the worker, and
# each response is checked. Loopback (or a unix socket) only; every run is bounded by
# a request count and a deadline.

our @EXPORT_OK = qw(start_load run_load worker_app rss_kb children_of);

my $JSON = JSON::PP->new->canonical;

# An app for these tests: GET /r/ID answers "ok /r/ID\n" with x-pid; /slow/ID first
# waits 0.3 s (a request in flight); lifespan is reported to stderr
sub worker_app (%opt) {
  require Future;
  my $slow = $opt{slow} // 0.3;
  return sub ($scope, $receive, $send) {
    if ($scope->{type} eq 'lifespan') {
      return $receive->()->then(sub {
        PAGI::Test::Server::report(lifespan => 'startup', pid => $$,
          is_worker => $scope->{pagi}{is_worker}, worker_num => $scope->{pagi}{worker_num});
        $send->({type => 'lifespan.startup.complete'});
      })->then(sub { $receive->() })->then(sub {
        PAGI::Test::Server::report(lifespan => 'shutdown', pid => $$);
        $send->({type => 'lifespan.shutdown.complete'});
      });
    }
    die "unsupported scope $scope->{type}\n" unless $scope->{type} eq 'http';
    my $path = $scope->{path};
    my $reply = sub {
      $send->({type => 'http.response.start', status => 200,
        headers => [['content-type', 'text/plain'], ['x-pid', $$]]})
        ->then(sub { $send->({type => 'http.response.body', body => "ok $path\n"}) });
    };
    return $reply->() unless $path =~ m{\A/slow/};
    require IO::Async::Loop;
    return IO::Async::Loop->new->delay_future(after => $slow)->then($reply);
  };
}

# start_load(port => N | unix => PATH, conns => 200, requests => 10_000, procs => 4,
#   duration => S (keep going until S seconds passed, still at most `requests`),
#   slow_every => K (every K-th request is /slow/ID), timeout => 50)
# Returns an object; ->wait gives the merged result:
#   {ok, errors (count), error_list => [first 20], pids => {pid => count},
#    reconnects, elapsed, rate}
sub start_load (%opt) {
  my $procs = $opt{procs} // 4;
  my $conns = $opt{conns} // 200;
  my $total = $opt{requests} // 10_000;
  my @kids;
  for my $i (0 .. $procs - 1) {
    my $n = int($conns / $procs) + ($i < $conns % $procs ? 1 : 0);
    my $r = int($total / $procs) + ($i < $total % $procs ? 1 : 0);
    pipe(my $rd, my $wr) or die "pipe: $!";
    my $pid = fork // die "fork: $!";
    if (!$pid) {
      close $rd;
      my $res = eval { _client(%opt, conns => $n, requests => $r, id_base => $i * 10_000_000) }
        || {fatal => "$@"};
      print {$wr} $JSON->encode($res);
      close $wr;
      POSIX::_exit(0);
    }
    close $wr;
    push @kids, [$pid, $rd];
  }
  return bless {kids => \@kids, started => Time::HiRes::time()}, __PACKAGE__;
}

sub run_load (%opt) { start_load(%opt)->wait }

sub wait ($self) {
  my %sum = (ok => 0, errors => 0, error_list => [], pids => {}, reconnects => 0, sent => 0);
  for my $k (@{$self->{kids}}) {
    my ($pid, $rd) = @$k;
    local $/;
    my $json = <$rd>;
    close $rd;
    waitpid($pid, 0);
    my $r = eval { $JSON->decode($json // '') } || {fatal => "client $pid gave no result"};
    if ($r->{fatal}) { $sum{errors}++; push @{$sum{error_list}}, "fatal: $r->{fatal}"; next }
    $sum{$_} += $r->{$_} for qw(ok errors reconnects sent);
    $sum{pids}{$_} += $r->{pids}{$_} for keys %{$r->{pids}};
    push @{$sum{error_list}}, @{$r->{error_list}};
  }
  splice @{$sum{error_list}}, 20 if @{$sum{error_list}} > 20;
  $sum{elapsed} = Time::HiRes::time() - $self->{started};
  $sum{rate} = $sum{elapsed} > 0 ? $sum{ok} / $sum{elapsed} : 0;
  return \%sum;
}

sub _connect (%opt) {
  my $s = $opt{unix}
    ? IO::Socket::UNIX->new(Peer => $opt{unix}, Type => SOCK_STREAM)
    : IO::Socket::IP->new(PeerHost => '127.0.0.1', PeerPort => $opt{port}, Timeout => 5);
  $s->blocking(0) if $s;
  return $s;
}

# One client process: $opt{conns} connections, $opt{requests} requests in all
sub _client (%opt) {
  my $deadline = Time::HiRes::time() + ($opt{timeout} // 50);
  my $until = $opt{duration} ? Time::HiRes::time() + $opt{duration} : undef;
  my $left = $opt{requests};
  my $next_id = $opt{id_base};
  my %res = (ok => 0, errors => 0, error_list => [], pids => {}, reconnects => 0, sent => 0);
  my $err = sub ($msg) {
    $res{errors}++;
    push @{$res{error_list}}, $msg if @{$res{error_list}} < 20;
  };
  my @c = map { {sock => undef, in => '', id => undef, reused => 0} } 1 .. $opt{conns};
  my $more = sub { $left > 0 && (!$until || Time::HiRes::time() < $until) };
  my $issue = sub ($c) {
    return 0 unless $more->();
    if (!$c->{sock}) {
      $c->{sock} = _connect(%opt) or do { $err->("connect: $!"); return 0 };
      $c->{reused} = 0;
    }
    my $id = $next_id++;
    $left--;
    $c->{id}   = $id;
    $c->{path} = $opt{slow_every} && $id % $opt{slow_every} == 0 ? "/slow/$id" : "/r/$id";
    $c->{in}   = '';
    my $req = "GET $c->{path} HTTP/1.1\r\nHost: load\r\n\r\n";
    my $w = syswrite($c->{sock}, $req);
    if (!defined $w || $w != length $req) {
      $err->("write $c->{path}: " . ($! || 'short write'));
      close $c->{sock};
      $c->{sock} = undef;
      $c->{id} = undef;
      return 1;
    }
    $res{sent}++;
    return 1;
  };
  $issue->($_) for @c;
  while (Time::HiRes::time() < $deadline) {
    my @busy = grep { defined $_->{id} } @c;
    last unless @busy;
    my $rin = '';
    vec($rin, fileno $_->{sock}, 1) = 1 for @busy;
    my $n = select(my $rout = $rin, undef, undef, 0.2);
    next if $n <= 0;
    for my $c (@busy) {
      next unless vec($rout, fileno $c->{sock}, 1);
      my $got = sysread($c->{sock}, $c->{in}, 65536, length $c->{in});
      next if !defined $got && ($! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR);
      my $closed = !$got;
      my ($r) = eval { PAGI::Test::Server::parse_response($c->{in}, 0, closed => $closed) };
      if ($@) { $err->("bad response to $c->{path}: $@") }
      elsif ($r) {
        if ($r->{status} == 200 && $r->{body} eq "ok $c->{path}\n") {
          $res{ok}++;
          $res{pids}{$r->{h}{'x-pid'} // '?'}++;
        }
        else { $err->("wrong response to $c->{path}: $r->{status} " . substr($r->{body}, 0, 60)) }
        if (!$closed && lc($r->{h}{connection} // '') ne 'close') {
          $c->{reused} = 1;
          $c->{id} = undef;
          $issue->($c);
          next;
        }
      }
      elsif (!$closed) { next }    # more bytes to come
      else {
        $err->(sprintf 'connection closed without a response to %s (%s, %d bytes)',
          $c->{path}, $c->{reused} ? 'reused connection' : 'new connection', length $c->{in});
      }
      # The server closed (or will): next request on a new connection
      close $c->{sock};
      $c->{sock} = undef;
      $c->{id} = undef;
      $res{reconnects}++;
      $issue->($c);
    }
  }
  for my $c (grep { defined $_->{id} } @c) { $err->("no response to $c->{path} before the deadline") }
  return \%res;
}

# Resident set size of a process in kB (Linux /proc), or undef
sub rss_kb ($pid) {
  open(my $fh, '<', "/proc/$pid/status") or return undef;
  while (my $l = <$fh>) { return $1 if $l =~ /\AVmRSS:\s+([0-9]+) kB/ }
  return undef;
}

# The pids of a process's children (Linux /proc)
sub children_of ($ppid) {
  my @kids;
  opendir(my $dh, '/proc') or return ();
  for my $pid (grep { /\A[0-9]+\z/ } readdir $dh) {
    open(my $fh, '<', "/proc/$pid/stat") or next;
    my $stat = <$fh> // next;
    # pid (comm) state ppid ...: comm may contain spaces and parentheses
    my ($state, $pp) = $stat =~ /\) (\S) ([0-9]+) / or next;
    push @kids, 0 + $pid if $pp == $ppid && $state ne 'Z';
  }
  return sort { $a <=> $b } @kids;
}

1;
