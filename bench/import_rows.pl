#!/usr/bin/perl
# import_rows.pl FORMAT ROWS SITE: prints an import file (csv or ndjson) of
# ROWS rows for SITE: subjects, each followed by one visit and, for every
# third subject, one adverse event.  Deterministic: the same arguments give
# the same file.  Used by bench/import.sh and tests/integration/test_import.sh.
use strict;
use warnings;
my ($format, $rows, $site) = @ARGV;
die "usage: import_rows.pl csv|ndjson ROWS SITE\n" unless defined $site && $format =~ /^(csv|ndjson)$/;
my @sex = qw(F M U);
my @sev = qw(MILD MODERATE SEVERE);
print "type,id,site,sex,brthdtc,status,svstdtc,aeterm,aestdtc,aesev,aeser\n" if $format eq 'csv';
my ($n, $subject) = (0, 0);
while ($n < $rows) {
    my $sid = sprintf("%s-%06d", $site, ++$subject);
    my @recs = (['subject', $sid, { site => $site, sex => $sex[$subject % 3],
                                    brthdtc => 1940 + $subject % 50, status => 'screening' }],
                ['visit', "$sid/V1", { svstdtc => '2026-11-02', status => 'scheduled' }]);
    push @recs, ['ae', "$sid-AE-001", { aeterm => "Headache, day $subject", aestdtc => '2026-11-03',
                                         aesev => $sev[$subject % 3], aeser => 'N',
                                         status => 'ongoing' }] if $subject % 3 == 0;
    for my $r (@recs) {
        last if $n++ >= $rows;
        my ($type, $id, $f) = @$r;
        if ($format eq 'csv') {
            my @cols = qw(site sex brthdtc status svstdtc aeterm aestdtc aesev aeser);
            print join(',', $type, $id, map { my $v = $f->{$_} // ''; $v =~ /[",\n]/ ? '"' . ($v =~ s/"/""/gr) . '"' : $v } @cols), "\n";
        } else {
            print "{\"type\":\"$type\",\"id\":\"$id\",\"fields\":{",
                join(',', map { "\"$_\":\"$f->{$_}\"" } sort keys %$f), "}}\n";
        }
    }
}
