"""End to end (issue 16): one fixture of every layout through a running daemon, every
article it publishes validated against IPTC's ninjs 1.6 JSON Schema (nwtest.check_ninjs,
which every e2e test also runs over what its subscribers received), and identifiers that
are not URIs carried as URIs all the same."""
import os

from nwtest import FIXTURES, NINJS_SCHEMA, Daemon, Skip, Subscriber, check, check_ninjs, \
    run, wait_for

ARTICLES = os.path.join(FIXTURES, 'articles')
LAYOUTS = {
    'header-01-all-keys.txt': 'header', 'scraped-01-basic.txt': 'scraped',
    'ninjs-02-v2.txt': 'ninjs', 'newsml-01-message-two-items.xml': 'newsml-g2',
    'newsml-02-lone-item-inline-nitf.xml': 'newsml-g2',
    'nitf-01-byline-dateline-abstract.xml': 'nitf', 'html-01-jsonld-newsarticle.html': 'html',
    'html-02-jsonld-graph.html': 'html', 'html-03-opengraph-only.html': 'html',
    'html-04-no-metadata-extraction.html': 'html',
}


def ids_seen(sub, n):
    def enough():
        ids = {m['id'] for m in sub.messages}
        if len(ids) >= n:
            return ids
        sub.poll(100)
        return None
    return wait_for(enough, '%d articles' % n)


def test_every_layout_validates():
    if not NINJS_SCHEMA or not os.path.exists(NINJS_SCHEMA):
        raise Skip('no ninjs schema at %r' % NINJS_SCHEMA)
    d = Daemon().start()
    try:
        sub = Subscriber(d)
        for name in sorted(LAYOUTS):
            with open(os.path.join(ARTICLES, name), 'rb') as f:
                d.drop_text(name, f.read())
        ids_seen(sub, len(LAYOUTS) + 1)          # the G2 message holds two stories
        formats = {m['source']['format'] for m in sub.messages}
        check(formats == set(LAYOUTS.values()), 'layouts published: %r' % sorted(formats))
        checked = check_ninjs([m['article'] for m in sub.messages])
        check(checked >= len(LAYOUTS) + 1, 'validated %d articles' % checked)
    finally:
        d.cleanup()


def test_identifiers_that_are_not_uris():
    """ninjs's uri is a URI: a source id without a scheme, or with blanks, still is one."""
    d = Daemon().start()
    try:
        sub = Subscriber(d)
        d.drop_text('a.txt', 'Title: Ferry timetable\nURI: ferry 2024/09\n\nFrom Monday.\n')
        d.drop_text('b.xml', '<nitf><head><docdata><doc-id id-string="PA-2024-0905 Zoë"/>'
                             '</docdata></head><body><body.head><hedline><hl1>Night buses'
                             '</hl1></hedline></body.head><body.content><p>From December.</p>'
                             '</body.content></body></nitf>')
        d.drop_text('c.html', '<!DOCTYPE html><html><head><link rel="canonical" '
                              'href="https://example.org/päivä 1"><title>Päivä</title></head>'
                              '<body><p>Teksti.</p></body></html>')
        ids_seen(sub, 3)
        uris = sorted(m['article']['uri'] for m in sub.messages)
        check(uris == ['https://example.org/p%C3%A4iv%C3%A4%201',
                       'urn:newswire:id:PA-2024-0905%20Zo%C3%AB',
                       'urn:newswire:id:ferry%202024/09'], 'uris %r' % uris)
    finally:
        d.cleanup()


if __name__ == '__main__':
    run([test_every_layout_validates, test_identifiers_that_are_not_uris])
