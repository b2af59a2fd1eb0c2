// The reconciler GitHub Action's pull-request comment and drift issue, run by actions/github-script
// (action.yml) with its `github` client and `context`. Plain CommonJS, no dependencies, so that it can be
// tested with Node alone (tests/test_gitops.py).
'use strict';

const fs = require('fs');
const path = require('path');

const MARKER = '<!-- reconciler-plan -->';
const STATUS_START = '<!-- reconciler-status -->';
const STATUS_END = '<!-- /reconciler-status -->';
const DRIFT_LABEL = 'reconciler-drift';
const DRIFT_TITLE = 'reconciler: Nexudus has drifted from the specs';
const ERRORS_SHOWN = 4000; // characters of the failed run's errors in the comment
const PLANNED = ['no-changes', 'changes', 'blocked'];

function read(file) {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    return '';
  }
}

function short(sha) {
  return (sha || '').slice(0, 7);
}

function errorsOf(out) {
  let text = read(path.join(out, 'errors.txt')).trim();
  if (text.length > ERRORS_SHOWN) {
    text = '…' + text.slice(text.length - ERRORS_SHOWN);
  }
  return text.replace(/```/g, "'''");
}

// The comment: the marker, a status block (where and when it was planned, or that it is stale), the plan.
function compose(status, plan) {
  return `${MARKER}\n${STATUS_START}\n${status}\n${STATUS_END}\n\n${plan}`;
}

function planOf(body) {
  const end = body.indexOf(STATUS_END);
  return end < 0 ? body.slice(MARKER.length).trim() : body.slice(end + STATUS_END.length).trim();
}

function plannedAt(body) {
  const found = /Planned at commit `([0-9a-f]+)`/.exec(body);
  return found ? found[1] : null;
}

// The plan comment is the one a bot (the token this action posts with: github-actions[bot], or an app) wrote
// with the marker. Anyone who can comment can write the marker too: such a comment is never adopted, updated or
// quoted, so a plan reviewers read is always one this action wrote.
function ours(comment) {
  return Boolean(comment.body && comment.body.startsWith(MARKER) && comment.user && comment.user.type === 'Bot');
}

async function previousComment(github, context) {
  const { owner, repo } = context.repo;
  const comments = await github.paginate(github.rest.issues.listComments, {
    owner, repo, issue_number: context.issue.number, per_page: 100,
  });
  return comments.find(ours) || null;
}

// Post the plan as ONE comment, updated in place on every push; when the run failed (no plan), mark the
// comment stale with the run's link and what failed, keeping the last good plan below for reference.
async function planComment({ github, context, core }, { result, out, sha, runUrl, pageUrl }) {
  const { owner, repo } = context.repo;
  const issue_number = context.issue.number;
  const previous = await previousComment(github, context);
  let body;
  if (PLANNED.includes(result) && read(path.join(out, 'plan.md'))) {
    const page = pageUrl ? ` [Open the review page](${pageUrl}): the members x lessons matrix of each course.` : '';
    const status = `Planned at commit \`${short(sha)}\` ([run](${runUrl})).${page}`;
    body = compose(status, read(path.join(out, 'plan.md')));
  } else {
    const errors = errorsOf(out);
    const details = errors ? `\n\n<details><summary>What failed</summary>\n\n\`\`\`\n${errors}\n\`\`\`\n</details>` : '';
    const was = previous ? plannedAt(previous.body) : null;
    const below = previous
      ? `the plan below${was ? `, made at commit \`${was}\`,` : ''} may no longer match this pull request`
      : 'there is no plan yet';
    const status = `> [!WARNING]\n> **Stale**: the plan run for commit \`${short(sha)}\` failed ([run](${runUrl})), so ${below}. `
      + `Fix what failed and push again.${details}`;
    body = compose(status, previous ? planOf(previous.body) : '');
  }
  if (previous) {
    await github.rest.issues.updateComment({ owner, repo, comment_id: previous.id, body });
    core.info(`updated the plan comment ${previous.id}`);
  } else {
    await github.rest.issues.createComment({ owner, repo, issue_number, body });
    core.info('posted the plan comment');
  }
  return body;
}

// One issue while drift lasts: opened when it appears, updated while it persists, closed when it is gone.
// A failed check says so on an open issue and leaves it open.
async function driftIssue({ github, context, core }, { result, out, runUrl }) {
  const { owner, repo } = context.repo;
  const open = await github.paginate(github.rest.issues.listForRepo, {
    owner, repo, state: 'open', labels: DRIFT_LABEL, per_page: 100,
  });
  const existing = open.find((issue) => issue.title === DRIFT_TITLE && issue.user && issue.user.type === 'Bot') || null;
  if (result === 'changes' || result === 'blocked') {
    const body = `${read(path.join(out, 'plan.md'))}\n\n_Checked by [this run](${runUrl})._`;
    if (existing) {
      await github.rest.issues.update({ owner, repo, issue_number: existing.number, body });
      core.info(`updated drift issue #${existing.number}`);
    } else {
      await github.rest.issues.create({ owner, repo, title: DRIFT_TITLE, body, labels: [DRIFT_LABEL] });
      core.info('opened a drift issue');
    }
    return 'open';
  }
  if (result === 'no-changes') {
    if (existing) {
      await github.rest.issues.createComment({
        owner, repo, issue_number: existing.number,
        body: `No drift any more: the specs and Nexudus agree ([run](${runUrl})).`,
      });
      await github.rest.issues.update({ owner, repo, issue_number: existing.number, state: 'closed' });
      core.info(`closed drift issue #${existing.number}`);
    }
    return 'closed';
  }
  const errors = errorsOf(out);
  core.warning(`the drift check failed; see ${runUrl}`);
  if (existing) {
    await github.rest.issues.createComment({
      owner, repo, issue_number: existing.number,
      body: `The drift check failed ([run](${runUrl})), so this issue may be out of date.`
        + (errors ? `\n\n\`\`\`\n${errors}\n\`\`\`` : ''),
    });
  }
  return 'failed';
}

module.exports = { planComment, driftIssue, MARKER, DRIFT_LABEL, DRIFT_TITLE };
