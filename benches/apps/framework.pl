# framework: what a small framework costs on top of the server. A tiny router
# (method + path with :params), two middleware layers written as plain PAGI app
# wrappers (request id + timing headers; a per-request state key), lifespan state,
# and a JSON response (Cpanel::JSON::XS when installed, else JSON::PP).
#   GET /users/42 -> {"id":"42","message":"Hello, World!","request_id":"...","user":"bench"}
use strict;
use warnings;
use Future::AsyncAwait;
use Time::HiRes ();

my $JSON = eval { require Cpanel::JSON::XS; Cpanel::JSON::XS->new->utf8->canonical }
  || do { require JSON::PP; JSON::PP->new->utf8->canonical };

async sub send_json {
  my ($send, $status, $data) = @_;
  await $send->({type => 'http.response.start', status => $status,
    headers => [['content-type', 'application/json']]});
  await $send->({type => 'http.response.body', body => $JSON->encode($data)});
}

# The router: routes are [METHOD, '/path/:param', handler]; params go in the scope
sub router {
  my @routes = map {
    my ($method, $pattern, $handler) = @$_;
    my @names;
    my $re = join '/', map {
      /\A:(\w+)\z/ ? do { push @names, $1; '([^/]+)' } : quotemeta
    } split m{/}, $pattern, -1;
    [$method, qr/\A$re\z/, \@names, $handler];
  } @_;
  return async sub {
    my ($scope, $receive, $send) = @_;
    for my $r (@routes) {
      next unless $scope->{method} eq $r->[0];
      my @values = $scope->{path} =~ $r->[1] or next;
      my %params;
      @params{@{$r->[2]}} = @values;
      return await $r->[3]->({%$scope, 'app.params' => \%params}, $receive, $send);
    }
    await send_json($send, 404, {error => 'not found'});
  };
}

# Middleware 1: a request id and the app's time, as response headers
sub request_id {
  my ($app) = @_;
  my $n = 0;
  return async sub {
    my ($scope, $receive, $send) = @_;
    return await $app->($scope, $receive, $send) unless $scope->{type} eq 'http';
    my $id = sprintf '%x-%d', $$, ++$n;
    my $t0 = Time::HiRes::time();
    my $wrapped = sub {
      my ($ev) = @_;
      if ($ev->{type} eq 'http.response.start') {
        my $ms = sprintf 'app;dur=%.3f', (Time::HiRes::time() - $t0) * 1000;
        $ev = {%$ev, headers => [@{$ev->{headers}}, ['x-request-id', $id], ['server-timing', $ms]]};
      }
      return $send->($ev);
    };
    await $app->({%$scope, 'app.request_id' => $id}, $receive, $wrapped);
  };
}

# Middleware 2: a per-request state key (what an auth or session layer would set)
sub current_user {
  my ($app) = @_;
  return async sub {
    my ($scope, $receive, $send) = @_;
    return await $app->($scope, $receive, $send) unless $scope->{type} eq 'http';
    my $state = {%{$scope->{state} // {}}, user => {id => 7, name => 'bench'}};
    await $app->({%$scope, state => $state}, $receive, $send);
  };
}

# Lifespan: the app's shared state, copied into every request's scope by the server
sub lifespan {
  my ($app) = @_;
  return async sub {
    my ($scope, $receive, $send) = @_;
    return await $app->($scope, $receive, $send) unless $scope->{type} eq 'lifespan';
    while (1) {
      my $ev = await $receive->();
      if ($ev->{type} eq 'lifespan.startup') {
        $scope->{state}{app_name} = 'bench';
        await $send->({type => 'lifespan.startup.complete'});
      }
      elsif ($ev->{type} eq 'lifespan.shutdown') {
        await $send->({type => 'lifespan.shutdown.complete'});
        return;
      }
    }
  };
}

my $routes = router(
  [GET => '/', async sub {
    my ($scope, $receive, $send) = @_;
    await send_json($send, 200, {message => 'Hello, World!'});
  }],
  [GET => '/users/:id', async sub {
    my ($scope, $receive, $send) = @_;
    await send_json($send, 200, {
      id         => $scope->{'app.params'}{id},
      message    => 'Hello, World!',
      request_id => $scope->{'app.request_id'},
      user       => $scope->{state}{user}{name},
      app        => $scope->{state}{app_name},
    });
  }],
);

lifespan(request_id(current_user($routes)));
