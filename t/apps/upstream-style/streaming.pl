# Written in the style of upstream PAGI::Server's examples (our own code): a named
# async sub, Future::IO->sleep between chunks (the runner sets Future::IO up), a
# chunked body, and a trailer. Upstream's command line: pagi-server --app FILE --port N
use strict;
use warnings;
use Future::AsyncAwait;
use Future::IO;

async sub app {
  my ($scope, $receive, $send) = @_;
  die "only http\n" unless $scope->{type} eq 'http';
  # read the request (and its body, if any) to its end
  while (1) {
    my $ev = await $receive->();
    last if $ev->{type} ne 'http.request' || !$ev->{more};
  }
  await $send->({type => 'http.response.start', status => 200,
    headers => [['content-type', 'text/plain']], trailers => 1});
  for my $n (1 .. 3) {
    await $send->({type => 'http.response.body', body => "part $n\n", more => 1});
    await Future::IO->sleep(0.05);
  }
  await $send->({type => 'http.response.body', body => '', more => 0});
  await $send->({type => 'http.response.trailers', headers => [['x-parts', '3']]});
}

\&app;
