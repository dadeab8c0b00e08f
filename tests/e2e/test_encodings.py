"""End to end (issue 11, item 10): files not in UTF-8.

A header-layout file saved as UTF-16LE with a BOM (CR LF, a character outside the BMP),
a ninjs document in UTF-16BE with a BOM, and a scraper's Windows-1252 file (typographic
quotes and dashes, the euro sign) are published with their text exactly as written,
`source.encoding` naming what each was read as, and a notice in the log; a Windows-1252
quote pasted into UTF-8 is mended with the UTF-8 around it kept; a UTF-8 file carries no
`source.encoding`. Checked with a raw Python subscriber and with the C
newswire-sub (libnewswire's nw_message_source_encoding).
"""
import json, os, subprocess

from nwtest import BIN, Daemon, Subscriber, check, run

CP1252_HEADLINE = 'Dockers\u2019 strike ends after \u201ca fair offer\u201d'
CP1252_BODY = ('The union\u2019s vote \u2013 812 to 97 \u2013 ends a strike that cost the port '
               '\u20ac3m a day.\n\nCrane crews return on Monday\u2026 at 06:00.')
UTF16_HEADLINE = 'Caf\u00e9 owners welcome the \u201clate licence\u201d plan \U0001F4F0'
UTF16_BODY = 'Owners in the old town say the change \u2014 due in May \u2014 will cost \u20ac2,000.'
NINJS_HEADLINE = 'Bj\u00f6rk plays the harbour fa\u00e7ade'


def files():
    cp1252 = ('Title: %s\nAuthor: Ren\u00e9 C\u00f4t\u00e9\nSubject: encodings\n\n%s\n'
              % (CP1252_HEADLINE, CP1252_BODY)).encode('cp1252')
    utf16 = b'\xff\xfe' + ('Title: %s\r\nSubject: encodings\r\n\r\n%s\r\n'
                           % (UTF16_HEADLINE, UTF16_BODY)).encode('utf-16-le')
    doc = {'uri': 'urn:example:utf16be:1', 'headline': NINJS_HEADLINE,
           'body_text': 'Tickets cost \u20ac40.', 'subject': [{'name': 'encodings'}]}
    ninjs = b'\xfe\xff' + json.dumps(doc, ensure_ascii=False).encode('utf-16-be')
    utf8 = ('Title: Plain UTF-8, caf\u00e9\nSubject: encodings\n\nNothing to convert.\n').encode()
    # UTF-8 with a Windows-1252 quote pasted in: the quote is mended, the rest kept
    pasted = ('Title: Z\u00fcrich \u00e9t\u00e9\nSubject: encodings\n\n'.encode()
              + b'A \x93pasted\x94 quote in Z\xc3\xbcrich.\n')
    return [('dockers.txt', cp1252), ('cafe.txt', utf16), ('harbour.json', ninjs),
            ('plain.txt', utf8), ('pasted.txt', pasted)]


def test_utf16_and_windows_1252_published_exactly():
    d = Daemon()
    try:
        d.start()
        sub = Subscriber(d, ['encodings'])
        before = d.log().count(" subscribe '")
        c_sub = subprocess.Popen([os.path.join(BIN, 'newswire-sub'), '--connect', d.endpoint,
                                  '--count', '5', '--timeout', '30', 'encodings'],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            d.wait_log(" subscribe '", count=before + 1)
            for name, data in files():
                d.drop_text(name, data)
            got = {m['source']['file']: m for m in sub.wait(5)}
            out, errs = c_sub.communicate(timeout=40)
        finally:
            if c_sub.poll() is None:
                c_sub.kill()
                c_sub.communicate()
        check(c_sub.returncode == 0, 'newswire-sub exit %r: %s' % (c_sub.returncode, errs))

        a = got['dockers.txt']
        check(a['article']['headline'] == CP1252_HEADLINE, 'cp1252 headline %r'
              % a['article']['headline'])
        check(a['article']['body_text'] == CP1252_BODY, 'cp1252 body %r' % a['article']['body_text'])
        check(a['article']['byline'] == 'Ren\u00e9 C\u00f4t\u00e9', 'cp1252 byline')
        check(a['source'] == {'file': 'dockers.txt', 'format': 'header',
                              'encoding': 'windows-1252'}, 'source %r' % a['source'])
        u = got['cafe.txt']
        check(u['article']['headline'] == UTF16_HEADLINE, 'UTF-16LE headline %r'
              % u['article']['headline'])
        check(u['article']['body_text'] == UTF16_BODY, 'UTF-16LE body %r' % u['article']['body_text'])
        check(u['source'].get('encoding') == 'UTF-16LE', 'source %r' % u['source'])
        n = got['harbour.json']
        check(n['article']['headline'] == NINJS_HEADLINE and n['source']['format'] == 'ninjs'
              and n['source'].get('encoding') == 'UTF-16BE', 'ninjs in UTF-16BE: %r' % n)
        m = got['pasted.txt']
        check(m['article']['headline'] == 'Z\u00fcrich \u00e9t\u00e9' and m['article']['body_text']
              == 'A \u201cpasted\u201d quote in Z\u00fcrich.' and m['source'].get('encoding')
              == 'windows-1252', 'the pasted quote mended, the UTF-8 kept: %r' % m)
        p = got['plain.txt']
        check('encoding' not in p['source'], 'UTF-8 carries no source.encoding: %r' % p['source'])

        lines = {json.loads(l)['source']['file']: json.loads(l) for l in out.splitlines()}
        check(lines['dockers.txt']['source'].get('encoding') == 'windows-1252'
              and lines['cafe.txt']['source'].get('encoding') == 'UTF-16LE'
              and 'encoding' not in lines['plain.txt']['source'],
              'newswire-sub shows source.encoding: %r' % {k: v['source'] for k, v in lines.items()})
        check(lines['dockers.txt']['article']['headline'] == CP1252_HEADLINE, 'C client text')

        log = d.log()
        for name, enc in (('dockers.txt', 'windows-1252'), ('cafe.txt', 'UTF-16LE'),
                          ('harbour.json', 'UTF-16BE')):
            check('notice  %s: not UTF-8, read as %s and converted' % (name, enc) in log,
                  'a notice for %s: log:\n%s' % (name, log))
        check('replaced' not in log, 'nothing replaced')
        check(d.rejected() == [], 'nothing rejected: %r' % d.rejected())
    finally:
        d.cleanup()


if __name__ == '__main__':
    run([test_utf16_and_windows_1252_published_exactly])
