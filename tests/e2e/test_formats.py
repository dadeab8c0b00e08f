"""End to end: the markup layouts (NewsML-G2, NITF, HTML) through a running daemon (issue 16):
a G2 message of several items gives one article per text item and is archived once,
after all of them are published; markup in no known layout is rejected with a reason."""
import os

from nwtest import FIXTURES, Daemon, Subscriber, check, run, wait_for

ARTICLES = os.path.join(FIXTURES, 'articles')


def fixture(name):
    with open(os.path.join(ARTICLES, name), 'rb') as f:
        return f.read()


def wait_uris(sub, uris):
    """Poll until every uri in uris was received; the messages by uri."""
    def seen():
        got = {}
        for m in sub.messages:
            got.setdefault(m['article']['uri'], []).append(m)
        if set(uris) <= set(got):
            return got
        sub.poll(100)
        return None
    return wait_for(seen, 'articles %s' % sorted(uris))


def test_g2_message_gives_one_article_per_text_item():
    d = Daemon().start()
    try:
        sub = Subscriber(d)
        d.drop_text('wire.xml', fixture('newsml-01-message-two-items.xml'))
        cranes = 'urn:newsml:wire.example.org:20240903:harbour-cranes'
        ferry = 'urn:newsml:wire.example.org:20240903:ferry-strike'
        got = wait_uris(sub, [cranes, ferry])
        wait_for(lambda: len(d.archived()) == 1, 'the file archived once')
        check(d.drop_files() == [], 'nothing left in the drop folder')
        check(os.path.basename(d.archived()[0]) == 'wire.xml', 'archived as wire.xml')
        check('urn:newsml:wire.example.org:20240903:harbour-photo' not in got,
              'the picture item is not published')
        for uri, msgs in got.items():
            ids = {m['id'] for m in msgs}
            check(len(ids) == 1, '%s: one id on every topic' % uri)
            for m in msgs:
                check(m['source'] == {'file': 'wire.xml', 'format': 'newsml-g2'},
                      'source %r' % m['source'])
        a = got[cranes][0]['article']
        check(a['headline'] == 'Harbour cranes go electric', 'headline %r' % a['headline'])
        check(a['byline'] == 'Ana Lima, Bo Chen', 'byline %r' % a.get('byline'))
        check(a['versioncreated'] == '2024-09-03T08:00:00.000Z', 'date %r' % a['versioncreated'])
        check(a['language'] == 'en-GB', 'language')
        check(a.get('version') == '2', 'the item version on the wire: %r' % a.get('version'))
        check('Dock workers' in a['body_text'] and '<' not in a['body_text'], 'body text')
        b = got[ferry][0]['article']
        check(b['headline'] == 'Färjestrejken avblåst' and b['language'] == 'sv', 'second item')
        check(got[cranes][0]['id'] != got[ferry][0]['id'], 'two articles, two ids')
        # Published in file order: every message of the first item before the second's.
        order = [m['article']['uri'] for m in sub.messages]
        check(order.index(ferry) > max(i for i, u in enumerate(order) if u == cranes),
              'items in file order: %r' % order)
        d.wait_log('published wire.xml', count=2)
        # IPTC Media Topics: the source's qcodes route through the table (daemon/medtop.json)
        # and go out as subject code and scheme beside the topic's name.
        medtop = 'http://cv.iptc.org/newscodes/mediatopic/'
        topics = sorted(m['topic'] for m in got[cranes])
        check(topics == ['economy-business-finance', 'labour', 'subj-04015000'], 'topics %r' % topics)
        subjects = got[cranes][0]['article']['subject']
        check({'name': 'economy-business-finance', 'scheme': medtop, 'code': 'medtop:04000000'}
              in subjects and {'name': 'labour', 'scheme': medtop, 'code': 'medtop:09000000'}
              in subjects, 'subjects %r' % subjects)
        check({'name': 'subj-04015000', 'scheme': 'http://cv.iptc.org/newscodes/subjectcode/',
               'code': 'subj:04015000'} in subjects, 'IPTC subject code kept %r' % subjects)
    finally:
        d.cleanup()


def test_topics_from_media_topic_codes():
    """A rule may name a Media Topic: a story coded with it is routed to the rule's topic
    and a story the rule's words route carries the code; a top-level code goes to the
    table's topic."""
    config = ('rules\n'
              '    strikes\n'
              '        medtop = "medtop:20000763"\n'
              '        words = "strike, walkout, picket"\n'
              '        threshold = 2\n')
    d = Daemon(config=config).start()
    try:
        sub = Subscriber(d)
        d.drop_text('a.json', '{"uri": "urn:x:a", "headline": "Ferry crews vote", "body_text": '
                              '"Crews meet on Monday.", "subject": [{"code": "medtop:20000763"}]}')
        d.drop_text('b.txt', 'Title: Dock walkout spreads\n\nA strike at the dock and a '
                             'picket at the gate.\n')
        d.drop_text('c.json', '{"uri": "urn:x:c", "headline": "Storm warning", "body_text": '
                              '"Gales tonight.", "subject": [{"name": "Weather", "code": '
                              '"medtop:17000000"}]}')
        got = sub.wait(3, what='three articles')
        by_head = {m['article']['headline']: m for m in got}
        medtop = 'http://cv.iptc.org/newscodes/mediatopic/'
        a, b, c = (by_head['Ferry crews vote'], by_head['Dock walkout spreads'],
                   by_head['Storm warning'])
        check(a['topic'] == 'strikes' and b['topic'] == 'strikes', 'routed to the rule')
        for m in (a, b):
            check(m['article']['subject'] == [{'name': 'strikes', 'scheme': medtop,
                                               'code': 'medtop:20000763'}],
                  'subject %r' % m['article']['subject'])
        check(c['topic'] == 'weather' and c['article']['subject'] == [
            {'name': 'weather', 'scheme': medtop, 'code': 'medtop:17000000'}],
            'top level %r' % c['article'])
    finally:
        d.cleanup()


def test_nitf_and_unknown_markup():
    d = Daemon().start()
    try:
        sub = Subscriber(d)
        d.drop_text('rss.xml', fixture('bad-xml-unknown-root.txt'))
        d.drop_text('buses.xml', fixture('nitf-01-byline-dateline-abstract.xml'))
        got = wait_uris(sub, ['urn:nitf:wire.example.org:2024-0905-night-buses'])
        m = list(got.values())[0][0]
        check(m['source']['format'] == 'nitf', 'format %r' % m['source'])
        a = m['article']
        check(a['headline'] == 'City council approves night buses', 'headline')
        check(a['byline'] == 'Ana Lima, Tom Berg', 'byline %r' % a.get('byline'))
        check(a['description_text'].startswith('Three night routes'), 'abstract')
        check(a.get('located') == 'TAMPERE, Sept. 5', 'the dateline as located: %r'
              % a.get('located'))
        check('version' not in a, 'no version when the source gives none')
        check(a['versioncreated'] == '2024-09-05T16:30:00.000Z', 'date %r' % a['versioncreated'])
        wait_for(lambda: 'rss.xml.reason' in d.rejected(), 'the feed rejected')
        with open(os.path.join(d.state, 'rejected', 'rss.xml.reason')) as f:
            reason = f.read()
        check('unknown layout: XML with root element <rss>' in reason, 'reason %r' % reason)
        check(all(m['article']['headline'] != '<?xml version="1.0" encoding="UTF-8"?>'
                  for m in sub.messages), 'no prolog published as a headline')
    finally:
        d.cleanup()


def test_html_pages():
    d = Daemon().start()
    try:
        sub = Subscriber(d)
        d.drop_text('silta.html', fixture('html-02-jsonld-graph.html'))
        d.drop_text('radwege.html', fixture('html-04-no-metadata-extraction.html'))
        silta = 'https://city.example.fi/uutiset/silta/'
        got = wait_uris(sub, [silta])
        a = got[silta][0]['article']
        check(got[silta][0]['source'] == {'file': 'silta.html', 'format': 'html'}, 'source')
        check(a['byline'] == 'Maija Virtanen', 'author from an @id reference: %r' % a.get('byline'))
        check(a['language'] == 'fi', 'html lang')
        for furniture in ('Lue myös', 'Kommentit', 'Jaa', 'Silta elokuussa', 'Urheilu'):
            check(furniture not in a['body_text'], '%r left in the body' % furniture)

        def radwege():
            for m in sub.messages:
                if m['article']['headline'] == 'Neue Radwege in der Altstadt':
                    return m
            sub.poll(100)
            return None
        m = wait_for(radwege, 'the page without metadata')
        body = m['article']['body_text']
        check(body.startswith('Die Stadt baut') and body.endswith('im Rathaus informieren.'),
              'main text %r' % body)
        for furniture in ('Anzeige', 'Teilen', 'Mehr zum Thema', 'Kommentare', 'Impressum', 'Start'):
            check(furniture not in body, '%r left in the body' % furniture)
        check(m['article']['uri'].startswith('urn:newswire:'), 'no canonical URL: our urn')
    finally:
        d.cleanup()


if __name__ == '__main__':
    run([test_g2_message_gives_one_article_per_text_item, test_topics_from_media_topic_codes,
         test_nitf_and_unknown_markup,
         test_html_pages])
