# A minimal PAGI application: pagi-server examples/hello/app.pl
use strict;
use warnings;
use Future::AsyncAwait;

async sub {
  my ($scope, $receive, $send) = @_;
  return if $scope->{type} eq 'lifespan';    # no startup work to do
  die "unsupported scope type $scope->{type}\n" unless $scope->{type} eq 'http';
  await $send->({
    type    => 'http.response.start',
    status  => 200,
    headers => [['content-type', 'text/plain']],
  });
  await $send->({type => 'http.response.body', body => "Hello, World!\n"});
};
