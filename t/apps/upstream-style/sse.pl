# Written in the style of upstream PAGI::Server's examples (our own code): an event
# stream of three events, Future::IO->sleep between them
use strict;
use warnings;
use Future::AsyncAwait;
use Future::IO;

async sub app {
  my ($scope, $receive, $send) = @_;
  if ($scope->{type} ne 'sse') {
    await $send->({type => 'http.response.start', status => 404, headers => [['content-type', 'text/plain']]});
    await $send->({type => 'http.response.body', body => 'not an event stream'});
    return;
  }
  await $send->({type => 'sse.start', status => 200});
  for my $n (1 .. 2) {
    await $send->({type => 'sse.send', event => 'count', data => $n});
    await Future::IO->sleep(0.05);
  }
  await $send->({type => 'sse.send', event => 'end', data => 'bye'});
}

\&app;
