// Days off and special dates in the hours editor: a date range, with no hours (a day off) or
// hours of its own.

import { field, h, localDate } from '../../ui.js';
import { intervalsEditor } from './intervals.js';

/** The list of `overrides` (edited in place) and the button that adds one. */
export function overridesEditor(overrides) {
  const list = h('ul', { class: 'override-list' });

  function row(override, index) {
    const from = h('input', {
      type: 'date',
      value: override.from || '',
      oninput: (e) => {
        override.from = e.target.value;
      },
    });
    const to = h('input', {
      type: 'date',
      value: override.to && override.to !== override.from ? override.to : '',
      oninput: (e) => {
        override.to = e.target.value || null;
      },
    });
    return h(
      'li',
      { class: 'override', dataset: { field: `overrides.${index}` } },
      h(
        'div',
        { class: 'grid-2' },
        field('From', from, { name: `overrides.${index}.from` }),
        field('Until (optional, inclusive)', to, { name: `overrides.${index}.to` }),
      ),
      h(
        'div',
        { dataset: { field: `overrides.${index}.intervals` } },
        h('p', { class: 'hint' }, 'No hours means a day off. Add hours for different hours on those dates.'),
        intervalsEditor(override.intervals, `overrides.${index}.intervals`, `Dates ${index + 1}`),
      ),
      h(
        'button',
        {
          type: 'button',
          class: 'link-button remove',
          onclick: () => {
            overrides.splice(index, 1);
            draw();
            add.focus();
          },
        },
        `Remove dates ${index + 1}`,
      ),
    );
  }

  function draw(focusNew = false) {
    list.replaceChildren(...overrides.map(row));
    if (!overrides.length) list.append(h('li', { class: 'empty' }, 'No days off planned.'));
    if (focusNew) {
      const inputs = list.querySelectorAll('li.override:last-child input[type="date"]');
      if (inputs.length) inputs[0].focus();
    }
  }

  const add = h(
    'button',
    {
      type: 'button',
      class: 'secondary small',
      onclick: () => {
        overrides.push({ from: localDate(new Date()), to: null, intervals: [] });
        draw(true);
      },
    },
    'Add days off',
  );
  draw();
  return { list, add };
}
