# hello: the same bytes as benches/raw_http.pl ("Hello, World!\n", text/plain)
use strict;
use warnings;
use Future::AsyncAwait;

my $start = {type => 'http.response.start', status => 200,
  headers => [['content-type', 'text/plain']]};
my $body = {type => 'http.response.body', body => "Hello, World!\n"};

async sub {
  my ($scope, $receive, $send) = @_;
  return if $scope->{type} eq 'lifespan';    # nothing to start
  die "unsupported scope type $scope->{type}\n" unless $scope->{type} eq 'http';
  await $send->($start);
  await $send->($body);
};
