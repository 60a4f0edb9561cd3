// One day's working intervals in the hours editor: from/until pairs (two or more leave a break
// between them), each removable, and a button that adds the next one.

import { h } from '../../ui.js';

/** An editor for `list` (edited in place); `path` names its fields for the hub's 422s. */
export function intervalsEditor(list, path, dayLabel) {
  const wrap = h('div', { class: 'intervals' });

  function timeInput(interval, end, label) {
    return h('input', {
      type: 'time',
      value: end ? interval.end : interval.start,
      'aria-label': label,
      oninput: (e) => {
        if (end) interval.end = e.target.value;
        else interval.start = e.target.value;
      },
    });
  }

  function draw(focusLast = false) {
    const rows = list.map((interval, index) => {
      const from = timeInput(interval, false, `${dayLabel}, interval ${index + 1}, from`);
      const to = timeInput(interval, true, `${dayLabel}, interval ${index + 1}, until`);
      return h(
        'li',
        { class: 'interval', dataset: { field: `${path}.${index}` } },
        h('span', { class: 'interval-inputs' }, h('span', { 'aria-hidden': 'true' }, 'From '), from, h('span', { 'aria-hidden': 'true' }, ' until '), to),
        h(
          'button',
          {
            type: 'button',
            class: 'link-button remove',
            'aria-label': `Remove ${dayLabel} interval ${index + 1}`,
            onclick: () => {
              list.splice(index, 1);
              draw();
              add.focus();
            },
          },
          'Remove',
        ),
      );
    });
    const add = h(
      'button',
      {
        type: 'button',
        class: 'secondary small add',
        'aria-label': `Add hours on ${dayLabel}`,
        onclick: () => {
          const last = list[list.length - 1];
          list.push(last ? { start: last.end === '00:00' ? '18:00' : last.end, end: '23:00' } : { start: '09:00', end: '17:00' });
          draw(true);
        },
      },
      list.length ? 'Add hours (after a break)' : 'Add hours',
    );
    wrap.replaceChildren(list.length ? h('ul', { class: 'interval-list' }, rows) : h('p', { class: 'day-off' }, 'Day off'), add);
    if (focusLast) {
      const inputs = wrap.querySelectorAll('input');
      if (inputs.length >= 2) inputs[inputs.length - 2].focus();
    }
  }

  draw();
  return wrap;
}
