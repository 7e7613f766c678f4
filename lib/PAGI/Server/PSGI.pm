package PAGI::Server::PSGI;
use strict;
use warnings;
use experimental 'signatures';
use Carp ();
use Scalar::Util qw(blessed weaken);
use Future;
use PAGI::Server::Protocol::HTTP1;

our $VERSION = '0.001';

# PSGI applications (PSGI 1.1, Plack's PSGI.pod) on PAGI::Server: to_app turns one
# into a PAGI application, so that the request still goes through the server's
# codec (parsed once, in Rust with the XS backend), keep-alive, pipelining, limits
# and timeouts, and the response through its framing (Content-Length or chunks
# decided by the codec; files streamed by the file path). The $env is built from the
# scope; the request body is read whole before the app runs (psgi.input is read
# synchronously by PSGI apps); the array, filehandle, getline-object and
# delayed/streaming ($responder, $writer) responses become http.response.* events.

# PSGI's fixed $env values
my @PSGI_VERSION = (1, 1);
# The psgi.input of a request without a body: one for all (empty, it has no state)
my $NO_INPUT = PAGI::Server::PSGI::Input->new(\'');
my %HTTP_NAME;    # 'user-agent' => 'HTTP_USER_AGENT', computed once per name

# to_app($psgi_app, server => $server): the PAGI application serving $psgi_app.
# $server (weakly held) gives psgi.multiprocess (its workers), psgix.harakiri
# (workers retire on psgix.harakiri.commit) and SERVER_NAME/PORT on Unix sockets.
sub to_app ($psgi, %opt) {
  Carp::croak('PAGI::Server::PSGI::to_app: the PSGI application must be a code reference')
    unless ref $psgi eq 'CODE';
  my $server = $opt{server};
  weaken($server) if $server;
  return sub ($scope, $receive, $send) {
    my $type = $scope->{type};
    return _lifespan($receive, $send) if $type eq 'lifespan';
    return Future->fail("PAGI::Server::PSGI: a PSGI application cannot serve a $type scope\n")
      if $type ne 'http';
    my $env = _env($scope, $server);
    # A request without a body (no Content-Length, not chunked) runs at once
    return _call($psgi, $env, $send, $server)
      unless defined $env->{CONTENT_LENGTH} || defined $env->{HTTP_TRANSFER_ENCODING};
    my $body = '';
    my $read;
    $read = sub ($ev) {
      if ($ev->{type} ne 'http.request') {
        undef $read;
        return Future->done;    # the client left before sending its body
      }
      $body .= $ev->{body};
      return $receive->()->then($read) if $ev->{more};
      undef $read;
      $env->{'psgi.input'} = PAGI::Server::PSGI::Input->new(\$body);
      $env->{CONTENT_LENGTH} //= length $body;
      return _call($psgi, $env, $send, $server);
    };
    return $receive->()->then($read);
  };
}

# Lifespan: a PSGI application has none; startup and shutdown complete at once
sub _lifespan ($receive, $send) {
  return $receive->()->then(sub ($ev) {
    $send->({type => 'lifespan.startup.complete'});
  })->then(sub { $receive->() })->then(sub ($ev) {
    $send->({type => 'lifespan.shutdown.complete'});
  });
}

# The PSGI environment of an http scope
sub _env ($scope, $server) {
  my $path = $scope->{path};
  utf8::encode($path) if utf8::is_utf8($path);    # PATH_INFO: decoded bytes, not characters
  my $root = $scope->{root_path};
  substr($path, 0, length $root, '') if length $root && index($path, $root) == 0;
  my $query = $scope->{query_string};
  my ($client, $addr) = ($scope->{client}, $scope->{server});
  my %env = (
    REQUEST_METHOD    => $scope->{method},
    SCRIPT_NAME       => $root,
    PATH_INFO         => $path,
    REQUEST_URI       => length $query ? "$scope->{raw_path}?$query" : $scope->{raw_path},
    QUERY_STRING      => $query,
    SERVER_PROTOCOL   => "HTTP/$scope->{http_version}",
    'psgi.version'    => \@PSGI_VERSION,
    'psgi.url_scheme' => $scope->{scheme},
    'psgi.input'      => $NO_INPUT,
    'psgi.errors'     => \*STDERR,
    'psgi.multithread'  => '',
    'psgi.multiprocess' => $server && $server->is_worker ? 1 : '',
    'psgi.run_once'     => '',
    'psgi.nonblocking'  => 1,
    'psgi.streaming'    => 1,
    'psgix.input.buffered' => 1,
    'psgix.harakiri'    => $server && $server->is_worker ? 1 : '',
  );
  if ($client) { @env{qw(REMOTE_ADDR REMOTE_PORT)} = @$client }
  if (defined $addr->[1]) { @env{qw(SERVER_NAME SERVER_PORT)} = @$addr }
  for my $h (@{$scope->{headers}}) {
    my ($name, $value) = @$h;
    my $key = $HTTP_NAME{$name} //= $name eq 'content-type' ? 'CONTENT_TYPE'
      : $name eq 'content-length' ? 'CONTENT_LENGTH' : 'HTTP_' . uc($name =~ tr/-/_/r);
    # Repeated fields are joined as PSGI says (RFC 9110 5.3: with commas; cookies,
    # which RFC 6265 joins with semicolons, too, as Plack's servers do)
    $env{$key} = exists $env{$key} ? "$env{$key}, $value" : $value;
  }
  if (!defined $env{SERVER_NAME}) {
    # A Unix socket: the Host field names the server, if anything does
    my ($host, $port) = ($env{HTTP_HOST} // 'localhost') =~ /\A(\[[^\]]*\]|[^:]*)(?::([0-9]+))?\z/;
    @env{qw(SERVER_NAME SERVER_PORT)} = (length $host ? $host : 'localhost', $port // 0);
  }
  return \%env;
}

# Runs the PSGI app and sends its response. Returns a Future done when the response
# is complete (a failed one for an app that died: the server answers 500, or cuts a
# response that had started)
sub _call ($psgi, $env, $send, $server) {
  my $res = eval { $psgi->($env) };
  return Future->fail($@ || "PSGI application died\n") if !defined $res && $@;
  my $f;
  if (ref $res eq 'ARRAY') { $f = _respond($send, $res) }
  elsif (ref $res eq 'CODE') {
    # Delayed: the app calls $responder later, with a whole response or the status and
    # headers only (then it writes the body through the returned writer)
    $f = Future->new;
    my $done = $f;
    my $ok = eval {
      $res->(sub ($r) {
        Carp::croak('PSGI responder: a response must be an array reference') unless ref $r eq 'ARRAY';
        if (@$r >= 3) {
          _respond($send, $r)->on_ready(sub ($g) { $done->done unless $done->is_ready; undef $done });
          return;
        }
        my ($start, $body_send) = _start($send, $r);
        return PAGI::Server::PSGI::Writer->new($body_send, $start, sub ($g) {
          return unless $done;
          $g->is_failed ? $done->fail($g->failure) : $done->done;
          undef $done;
        });
      });
      1;
    };
    return Future->fail($@) if !$ok;
  }
  else { return Future->fail("PSGI application returned neither an array nor a code reference\n") }
  # psgix.harakiri.commit: this worker retires once the response is done
  $f = $f->on_done(sub { $server->retire if $server && $server->is_worker })
    if $env->{'psgix.harakiri.commit'};
  return $f;
}

# http.response.start from a PSGI status and header list. Returns the send's Future
# and the $send for the body: the PAGI $send, or, when the app chunked its body
# itself (Transfer-Encoding: chunked, as Plack::Middleware::Chunked and Mojolicious
# do), one that decodes those chunks first (the server frames the body: it would
# chunk them again)
sub _start ($send, $r) {
  my ($status, $h) = @$r;
  my (@headers, $chunked);
  for (my $i = 0; $i < @$h; $i += 2) {
    $chunked = 1 if lc $h->[$i] eq 'transfer-encoding' && $h->[$i + 1] =~ /chunked/i;
    push @headers, [$h->[$i], $h->[$i + 1]];
  }
  my $f = $send->({type => 'http.response.start', status => $status, headers => \@headers});
  return ($f, $chunked ? _dechunking($send) : $send);
}

# A $send whose http.response.body bytes are a chunked body, decoded before they go on
sub _dechunking ($send) {
  my ($state, $buf) = (PAGI::Server::Protocol::HTTP1::CHUNK_SIZE(), '');
  return sub ($ev) {
    return $send->($ev) if $ev->{type} ne 'http.response.body';
    return Future->done if $state == PAGI::Server::Protocol::HTTP1::CHUNK_DONE();    # (its last chunk ended it)
    $buf .= $ev->{body} // '';
    my ($data, $consumed, $next) = PAGI::Server::Protocol::HTTP1::decode_chunked($buf, $state, 16384);
    return Future->fail("PSGI application: its own chunked body is malformed\n") if ref $data;
    substr($buf, 0, $consumed, '');
    $state = $next;
    # The app's last chunk ends the body, whatever it says of more
    return $send->({type => 'http.response.body', body => $data,
      more => $state == PAGI::Server::Protocol::HTTP1::CHUNK_DONE() ? 0 : $ev->{more}});
  };
}

# A whole response: [status, headers, body], body an array of strings, a filehandle
# or an object with getline and close
sub _respond ($send_start, $r) {
  my ($start, $send) = _start($send_start, $r);
  return $start if $start->is_failed;
  my $body = $r->[2];
  if (ref $body eq 'ARRAY') {
    return $send->({type => 'http.response.body', body => @$body == 1 ? $body->[0] : join '', @$body});
  }
  # A real file: through the server's file path (Content-Length, streamed reads)
  if (blessed $body && $body->can('path') && defined(my $path = $body->path)) {
    my $f = $send->({type => 'http.response.body', file => $path});
    $body->close if $body->can('close');
    return $f;
  }
  if (ref $body eq 'GLOB' && defined fileno($body) && -f $body) {
    return $send->({type => 'http.response.body', fh => $body})->on_ready(sub { close $body });
  }
  return _pump_lines($send, $body);
}

# An IO::Handle-like object (or a glob without a file): read line by line until
# getline gives undef. An empty string means "nothing yet, ask again later" (so
# Mojolicious's PSGI body says it): the loop gets a turn before the next try, instead
# of spinning inside it
use constant GETLINE_RETRY => 0.005;
sub _pump_lines ($send, $body) {
  my $done = Future->new;
  my $step;
  $step = sub {
    while (1) {
      my $chunk = eval { $body->getline };
      if (!defined $chunk) {
        my $err = $@;
        undef $step;
        $body->close;
        return $done->fail($err) if $err;
        return $send->({type => 'http.response.body', body => ''})->on_ready($done);
      }
      if (!length $chunk) {
        require IO::Async::Loop;
        IO::Async::Loop->new->watch_time(after => GETLINE_RETRY, code => sub { $step->() if $step });
        return;
      }
      my $f = $send->({type => 'http.response.body', body => $chunk, more => 1});
      if ($f->is_failed) {
        undef $step;
        $body->close;
        return $f->on_ready($done);
      }
    }
  };
  $step->();
  return $done;
}

# psgi.input: the buffered request body, read (and seekable) like a filehandle
package PAGI::Server::PSGI::Input;
use experimental 'signatures';

sub new ($class, $body) { bless [$body, 0], $class }

# read($buf, $len, $offset): as the read builtin (no signature: $_[1] is the
# caller's buffer, written in place)
sub read {
  my ($self, undef, $len, $offset) = @_;
  my $body = $self->[0];
  my $left = length($$body) - $self->[1];
  $len = $left if $len > $left;
  $len = 0 if $len < 0;
  $_[1] = '' unless defined $_[1];
  substr($_[1], $offset // 0) = substr($$body, $self->[1], $len);
  $self->[1] += $len;
  return $len;
}

sub seek ($self, $pos, $whence = 0) {
  my $size = length ${$self->[0]};
  $pos += $self->[1] if $whence == 1;
  $pos += $size if $whence == 2;
  return 0 if $pos < 0;
  $self->[1] = $pos > $size ? $size : $pos;
  return 1;
}

sub tell ($self) { $self->[1] }
sub close ($self) { 1 }

# The writer of a streaming response ($responder->([status, headers]))
package PAGI::Server::PSGI::Writer;
use experimental 'signatures';

sub new ($class, $send, $start, $done) { bless {send => $send, last => $start, done => $done}, $class }

sub write ($self, $data) {
  Carp::croak('PSGI writer: write after close') if $self->{closed};
  return unless defined $data && length $data;
  # The send's Future is not waited for: the bytes are queued either way
  $self->{last} = $self->{send}->({type => 'http.response.body', body => $data, more => 1});
  return;
}

sub close ($self) {
  return if $self->{closed}++;
  my $f = $self->{send}->({type => 'http.response.body', body => ''});
  $f->on_ready($self->{done});
  return;
}

# A writer dropped without close ends the response as close does
sub DESTROY ($self) {
  return if $self->{closed} || ${^GLOBAL_PHASE} eq 'DESTRUCT';
  $self->close;
}

1;

=head1 NAME

PAGI::Server::PSGI - serve PSGI applications with PAGI::Server

=head1 SYNOPSIS

  use PAGI::Server;
  use PAGI::Server::PSGI;

  my $psgi = sub ($env) { [200, ['Content-Type' => 'text/plain'], ["Hello\n"]] };
  my $server = PAGI::Server->new(psgi_app => $psgi, port => 5000);
  exit $server->run;

  # or: pagi-server app.psgi --port 5000
  # or: plackup -s PAGI::Server app.psgi

=head1 DESCRIPTION

Runs a PSGI application (PSGI 1.1) on PAGI::Server: its requests are parsed and its
responses framed by the server's codec (Rust with the XS backend), with the server's
keep-alive, pipelining, limits, timeouts, access log and workers.

The C<$env> has the CGI keys (C<REQUEST_METHOD>, C<SCRIPT_NAME> (the C<root_path>),
C<PATH_INFO> (percent-decoded bytes), C<REQUEST_URI>, C<QUERY_STRING>,
C<SERVER_NAME>/C<SERVER_PORT> (the listening address; from C<Host> on a Unix socket),
C<SERVER_PROTOCOL>, C<REMOTE_ADDR>/C<REMOTE_PORT>, C<CONTENT_TYPE>,
C<CONTENT_LENGTH>, C<HTTP_*> with repeated fields joined by C<, >), C<psgi.version>
C<[1, 1]>, C<psgi.url_scheme>, C<psgi.input> (the whole request body, read before
the application runs; seekable: C<psgix.input.buffered> is true), C<psgi.errors>
(STDERR), C<psgi.multithread> false, C<psgi.multiprocess> true with C<workers>,
C<psgi.run_once> false, C<psgi.nonblocking> and C<psgi.streaming> true, and
C<psgix.harakiri> (true with C<workers>: setting C<psgix.harakiri.commit> retires the
worker after the response). C<psgix.io> is not given: the socket stays the server's.

Responses: C<[status, headers, body]> with an array of strings (one write, with a
Content-Length), a filehandle (a real file is sent through the server's file path,
with its length; one with C<path> by that path) or an object with C<getline> and
C<close>; and the delayed forms, C<< sub { my $responder = shift; ... } >> with a whole
response or with status and headers, writing the body through C<< $writer->write >>
and C<< $writer->close >>.

The application runs inside the server's event loop: one that blocks (a slow
database call, C<sleep>) blocks every connection of its process. Use C<workers> for
such applications, as with Starman.

=cut
