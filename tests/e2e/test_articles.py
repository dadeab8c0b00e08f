"""End to end: real article layouts through a running daemon (issue: parse real articles)."""
import json, os, signal

from nwtest import SHARED, Daemon, Skip, Subscriber, check, run, wait_for

SPECIMEN = os.path.join(SHARED, 'specimens', 'scraped-telecoms-article.txt') if SHARED else ''


def test_specimen_lands_on_telecoms_clean():
    if not SPECIMEN or not os.path.exists(SPECIMEN):
        raise Skip('no specimen at %r' % SPECIMEN)
    d = Daemon().start()
    try:
        sub = Subscriber(d, ['telecoms'])
        with open(SPECIMEN, 'rb') as f:
            d.drop_text('specimen.txt', f.read())
        m = sub.wait(1)[0]
        a = m['article']
        check(m['topic'] == 'telecoms', 'topic %r' % m['topic'])
        check(a['headline'] == 'Leaked Huawei memo reveals plan for global software domination',
              'headline %r' % a['headline'])
        check(a['byline'] == 'Scott Bicheno', 'byline %r' % a.get('byline'))
        check(a['versioncreated'].startswith('2021-05-25T'), 'date %r' % a['versioncreated'])
        check(m['source']['format'] == 'scraped', 'format %r' % m['source'])
        body = a['body_text']
        for furniture in ('About the Author', 'Follow him', 'You May Also Like', 'Min Read'):
            check(furniture not in body, '%r left in the body' % furniture)
        check(a.get('description_text') and a['description_text'] in body,
              'standfirst kept as description and in the body')
    finally:
        d.cleanup()


def test_ninjs_and_scraped_fixtures_through_the_daemon():
    d = Daemon().start()
    try:
        sub = Subscriber(d)
        doc = {'uri': 'urn:example:wire:1', 'headline': 'Regulator opens a spectrum auction',
               'byline': 'Wire Desk', 'versioncreated': '2024-09-03T08:30:00+02:00',
               'body_text': 'The auction opens next month.', 'subject': [{'name': 'Telecoms'}],
               'unknown_field': {'ignored': True}}
        d.drop_text('wire.json', json.dumps(doc))
        m = sub.wait(1)[0]
        check(m['source']['format'] == 'ninjs', 'format')
        check(m['article']['uri'] == 'urn:example:wire:1', 'uri kept')
        check(m['article']['versioncreated'] == '2024-09-03T06:30:00.000Z', 'UTC date')
        check(m['topic'] == 'telecoms', 'own subject %r' % m['topic'])
        # the same uri dropped again is the same article: deduplicated
        d.drop_text('wire-again.json', json.dumps(doc))
        d.wait_log('duplicate wire-again.json')
        d.drop_text('bad.json', '{"headline": "broken",')
        wait_for(lambda: 'bad.json.reason' in d.rejected(), 'invalid JSON rejected')
        with open(os.path.join(d.state, 'rejected', 'bad.json.reason')) as f:
            check('JSON' in f.read(), 'reason names JSON')
    finally:
        d.cleanup()


if __name__ == '__main__':
    run([test_specimen_lands_on_telecoms_clean, test_ninjs_and_scraped_fixtures_through_the_daemon])
