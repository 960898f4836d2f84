#!/usr/bin/perl
# Deterministic benchmark corpus for bench/scan: writes COUNT messages msg-NNNN.eml into DIR and
# all of them as DIR/all.mbox (plus DIR/one.mbox with the first message).
#
#     perl bench/scan-corpus.pl DIR [COUNT]
#
# Half ham, half spam-like; formats cycle through plain 7bit, HTML only, multipart/alternative
# (quoted-printable), base64 text, quoted-printable text, multipart/mixed with a base64
# attachment, multipart/alternative with base64 HTML and 8bit Latin-1; sizes spread
# log-uniformly over about 1 to 100 KiB. The same COUNT always gives the same bytes (own LCG,
# fixed dates), so every scanner and every run sees identical messages. No body line starts with
# "From " so the mbox needs no quoting.
use strict;
use warnings;
use MIME::Base64 qw(encode_base64);
use MIME::QuotedPrint qw(encode_qp);

my ($dir, $count) = @ARGV;
die "usage: $0 DIR [COUNT]\n" unless defined $dir;
$count //= 200;
mkdir $dir unless -d $dir;

my $seed = 20240601;
sub rnd { $seed = ($seed * 1103515245 + 12345) % 2147483648; return $seed / 2147483648; }
sub pick { my $r = shift; return $r->[int(rnd() * @$r)]; }

my @ham = (
    "Hi Anna, thanks for sending the minutes from Tuesday. I went through the action items and updated the project plan accordingly; the new milestones are in the shared folder.",
    "The quarterly report is attached. Please review the figures for the northern region before our meeting on Thursday, especially the travel budget, which came in higher than planned.",
    "Could you check whether the build server still has enough disk space? The nightly job failed twice this week with an out-of-space error while unpacking the test fixtures.",
    "Dinner on Saturday sounds great. We will bring a salad and something for dessert. Let me know if seven o'clock works for you or if we should come a bit earlier to help.",
    "Reminder: the library will be closed on Monday for maintenance. Books due that day can be returned on Tuesday without a late fee. The reading room reopens at nine.",
    "I reviewed the pull request and left a few comments about error handling in the parser. Otherwise it looks good to me and I think we can merge it after the tests pass.",
    "Attached are the photos from the hiking trip. The weather was better than forecast and we made it to the summit before noon. Next time we should start even earlier.",
    "Our team meeting has moved to room 4.12 because of the renovation on the third floor. The agenda is unchanged: status updates, the hiring plan and the release schedule.",
    "Thank you for your order. Your package will ship within three business days and you will receive a tracking number by email once it leaves our warehouse.",
    "Please find below the summary of the incident review. The root cause was an expired certificate on the internal proxy; monitoring now alerts thirty days before expiry.",
);

my @spam = (
    "Dear Friend, CONGRATULATIONS! You have been selected as the WINNER of our international lottery. To claim your prize of \$2,500,000.00 (TWO MILLION FIVE HUNDRED THOUSAND DOLLARS) send your full name, address and bank account details to our claims agent immediately.",
    "Buy Viagra, Cialis and Levitra online with NO PRESCRIPTION needed! Lowest prices guaranteed, 100% satisfaction, discreet shipping worldwide. Order now and save up to 80%!!!",
    "I am Mr. Johnson Okoro, the bank manager of a reputable bank. I need your assistance to transfer the sum of US\$15,500,000 (fifteen million five hundred thousand US dollars) to your account. You will receive 30% of the total sum for your assistance. This transaction is 100% risk free.",
    "MAKE MONEY FAST working from home! Earn \$5000 per week with no experience required. This is NOT a scam. Click here to start earning today. Limited time offer, act now!",
    "Your account has been suspended due to unusual activity. Please verify your account information within 24 hours by clicking the link below, otherwise your account will be permanently closed.",
    "Lose 30 pounds in 30 days with our amazing new diet pill! Doctors hate this one simple trick. 100% natural, no side effects, money back guarantee. Order your free trial bottle now!",
    "Refinance your mortgage today at the lowest rates in years! No credit check, approval in minutes. Get a free quote now and save thousands of dollars on your monthly payments.",
    "We have hacked your device and recorded you. Pay 1500 USD in Bitcoin to the wallet below within 48 hours or we will send the video to all your contacts. Do not reply to this email.",
    "Replica watches, designer handbags and luxury sunglasses at unbeatable prices. Rolex, Omega, Cartier - top quality Swiss replicas. Free shipping on all orders this week only!",
    "You are receiving this email because you signed up for our newsletter. To be removed from our mailing list, click here to unsubscribe. This message is sent in compliance with the CAN-SPAM act.",
);

my @subjects_ham = ("Re: minutes from Tuesday", "Quarterly report", "build server disk space", "Dinner on Saturday?",
    "Library closed on Monday", "Re: [PATCH] parser error handling", "Photos from the trip", "Meeting room change",
    "Your order has shipped", "Incident review summary");
my @subjects_spam = ("CONGRATULATIONS!!! YOU HAVE WON", "Cheap V1agra - no prescription", "URGENT BUSINESS PROPOSAL",
    "Make \$5000 a week from home!!!", "Your account has been suspended", "Lose weight FAST - free trial",
    "Lowest mortgage rates - act now", "I recorded you", "Replica watches 80% off", "Special offer just for you");
my @mailers = ("Microsoft Outlook 16.0", "Mozilla Thunderbird 115.3.1", "Apple Mail (2.3731)", "The Bat! (v9.4.2)",
    "PHPMailer 6.8.0 (https://github.com/PHPMailer/PHPMailer)", "Microsoft Outlook Express 6.00.2600.0000");
my @urls_ham = ("https://intranet.example.com/projects/plan", "https://www.example.org/library/hours",
    "https://git.example.net/team/parser/pull/42", "https://photos.example.com/album/2024");
my @urls_spam = ("http://claims-agent.example.xyz/winner.php?id=8842", "http://192.0.2.45/pharmacy/order.html",
    "http://bit.example.top/r/abc123", "https://secure-login.example-bank.test.example.ru/verify",
    "http://www.replica-store.example.cn/watches", "http://unsubscribe.example.biz/remove?u=1");

sub paragraphs {
    my ($pool, $target, $html) = @_;
    my $text = '';
    my $i = 0;
    while (length($text) < $target) {
        my $p = pick($pool);
        if ($html) {
            $text .= ($i % 5 == 4) ? "<p><b>$p</b> <a href=\"" . pick($i % 2 ? \@urls_spam : \@urls_ham) . "\">details</a></p>\n"
                                   : "<p>$p</p>\n";
        } else {
            # Wrap at about 76 columns like a mail client.
            my $line = '';
            for my $w (split / /, $p) {
                if (length($line) + length($w) + 1 > 76) { $text .= "$line\n"; $line = ''; }
                $line .= ($line eq '' ? '' : ' ') . $w;
            }
            $text .= "$line\n\n";
        }
        $i++;
    }
    return $text;
}

sub html_wrap {
    my ($body, $spam) = @_;
    my $style = $spam ? "<body bgcolor=\"#ffffff\"><font color=\"#ff0000\" size=\"5\">" : "<body><div>";
    my $end = $spam ? "</font>" : "</div>";
    return "<html><head><meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\"></head>\n$style\n$body$end\n</body></html>\n";
}

sub wrap76 { my $s = shift; $s =~ s/(.{76})/$1\n/g; return $s; }

my @days = qw(Mon Tue Wed Thu Fri Sat Sun);
open my $mbox, '>', "$dir/all.mbox" or die "$dir/all.mbox: $!";
for my $n (1 .. $count) {
    my $spam = $n % 2 == 0;
    my $format = int(($n - 1) / 2) % 8;
    my $size = int(800 * (100 ** rnd()));            # body text before encoding: ~0.8-80 KB
    my $pool = $spam ? \@spam : \@ham;
    my $k = int(rnd() * 10);
    my $subject = ($spam ? \@subjects_spam : \@subjects_ham)->[$k];
    my $from = $spam ? sprintf("\"%s\" <%s%d\@%s>", pick(["Lottery Board", "Pharmacy Online", "Mr. Johnson", "Account Services", "Best Deals"]),
                               pick(["claims", "info", "support", "noreply", "offers"]), int(rnd() * 9999),
                               pick(["winners.example.xyz", "mail.example.top", "example.ru", "freemail.example.com"]))
                     : sprintf("%s <%s\@%s>", pick(["Anna Berg", "Tom Keller", "Maria Rossi", "Li Wei", "Sam Doe"]),
                               pick(["anna", "tom.keller", "m.rossi", "li.wei", "sam"]), pick(["example.com", "example.org", "example.net"]));
    my $day = $n % 28 + 1;
    my $date = sprintf("%s, %d Jun 2024 %02d:%02d:%02d +0200", $days[$n % 7], $day, $n % 24, ($n * 7) % 60, ($n * 13) % 60);
    my $hdr = '';
    $hdr .= sprintf("Received: from mx%d.example.net (mx%d.example.net [198.51.100.%d])\n\tby mail.example.test with ESMTPS id %08X\n\tfor <user\@example.test>; %s\n",
                    $n % 7, $n % 7, $n % 250 + 1, $n * 2654435761 % 4294967296, $date);
    $hdr .= sprintf("Received: from [10.0.%d.%d] (unknown [203.0.113.%d])\n\tby mx%d.example.net; %s\n", $n % 200, $n % 250, $n % 250 + 1, $n % 7, $date)
        if $spam || $n % 3 == 0;
    $hdr .= "From: $from\n";
    $hdr .= "To: " . ($spam && $n % 4 == 0 ? "undisclosed-recipients:;" : "User <user\@example.test>") . "\n";
    $hdr .= "Subject: $subject\n";
    $hdr .= "Date: $date\n" unless $spam && $n % 10 == 0;
    $hdr .= $spam && $n % 6 == 0 ? sprintf("Message-ID: <%d.%d\@localhost>\n", $n, $n * 31)
                                 : sprintf("Message-ID: <%08x.%d\@%s>\n", $n * 40503, $n, $spam ? "mail.example.top" : "mail.example.com");
    $hdr .= "X-Mailer: " . pick(\@mailers) . "\n" if $n % 3;
    $hdr .= "Reply-To: <claims" . $n . "\@freemail.example.com>\n" if $spam && $n % 4 == 2;
    $hdr .= "In-Reply-To: <prev.$n\@mail.example.com>\nReferences: <prev.$n\@mail.example.com>\n" if !$spam && $n % 5 == 1;
    $hdr .= "List-Unsubscribe: <http://unsubscribe.example.biz/remove?u=$n>\nPrecedence: bulk\n" if $spam && $n % 8 == 4;
    $hdr .= "MIME-Version: 1.0\n";
    my $boundary = sprintf("----=_Part_%d_%08x", $n, $n * 2246822519 % 4294967296);
    my $body;
    if ($format == 0) {
        $hdr .= "Content-Type: text/plain; charset=us-ascii\nContent-Transfer-Encoding: 7bit\n";
        $body = paragraphs($pool, $size, 0);
    } elsif ($format == 1) {
        $hdr .= "Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: 7bit\n";
        $body = html_wrap(paragraphs($pool, $size, 1), $spam);
    } elsif ($format == 2) {
        $hdr .= "Content-Type: multipart/alternative; boundary=\"$boundary\"\n";
        my $t = paragraphs($pool, $size / 2, 0);
        my $h = html_wrap(paragraphs($pool, $size / 2, 1), $spam);
        $body = "This is a multi-part message in MIME format.\n\n--$boundary\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n"
              . encode_qp($t) . "\n--$boundary\nContent-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n"
              . encode_qp($h) . "\n--$boundary--\n";
    } elsif ($format == 3) {
        $hdr .= "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n";
        $body = encode_base64(paragraphs($pool, $size, 0));
    } elsif ($format == 4) {
        $hdr .= "Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n";
        my $t = paragraphs($pool, $size, 0);
        $t =~ s/ the / th\xe9 /g if $spam;
        $body = encode_qp($t);
    } elsif ($format == 5) {
        $hdr .= "Content-Type: multipart/mixed; boundary=\"$boundary\"\n";
        my $t = paragraphs($pool, $size / 3 + 200, 0);
        my ($name, $type) = @{pick([["report.pdf", "application/pdf"], ["invoice.zip", "application/zip"],
                                    ["document.doc", "application/msword"], ["photo.jpg", "image/jpeg"]])};
        my $bin = join('', map { chr(int(rnd() * 256)) } 1 .. int($size * 2 / 3 * 0.75));
        $body = "--$boundary\nContent-Type: text/plain; charset=us-ascii\nContent-Transfer-Encoding: 7bit\n\n$t\n--$boundary\n"
              . "Content-Type: $type; name=\"$name\"\nContent-Transfer-Encoding: base64\nContent-Disposition: attachment; filename=\"$name\"\n\n"
              . encode_base64($bin) . "\n--$boundary--\n";
    } elsif ($format == 6) {
        $hdr .= "Content-Type: multipart/alternative; boundary=\"$boundary\"\n";
        my $t = paragraphs($pool, 300, 0);
        my $h = html_wrap(paragraphs($pool, $size, 1), $spam);
        $body = "--$boundary\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 7bit\n\n$t\n--$boundary\n"
              . "Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: base64\n\n" . encode_base64($h) . "\n--$boundary--\n";
    } else {
        $hdr .= "Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: 8bit\n";
        $body = paragraphs($pool, $size, 0);
        $body =~ s/ and / und \xfc /g;
    }
    $body =~ s/^From /From: /mg;
    my $msg = "$hdr\n$body";
    my $file = sprintf("%s/msg-%04d.eml", $dir, $n);
    open my $fh, '>', $file or die "$file: $!";
    print $fh $msg;
    close $fh;
    print $mbox "From bench\@localhost Sat Jun  1 00:00:00 2024\n$msg\n";
    if ($n == 1) {
        open my $one, '>', "$dir/one.mbox" or die "$dir/one.mbox: $!";
        print $one "From bench\@localhost Sat Jun  1 00:00:00 2024\n$msg\n";
        close $one;
    }
}
close $mbox;
