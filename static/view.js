// How a view lives on the page: app.js mounts it into #view with the app's context and calls
// what mount returned when the route changes or the user signs out. A view hands everything it
// starts (live subscriptions, timers, a hold to let go of) to its Lifetime, which undoes it
// all once, newest first; requests still in flight check `life.disposed` when they return.

import { h } from './ui.js';

export class Lifetime {
  constructor() {
    this.disposed = false;
    this.undo = [];
  }

  /** Run `fn` when the view goes. */
  defer(fn) {
    if (this.disposed) fn();
    else this.undo.push(fn);
  }

  /** Listen to the live connection for as long as the view lives. */
  listen(live, type, handler) {
    this.defer(live.on(type, handler));
  }

  dispose() {
    if (this.disposed) return;
    this.disposed = true;
    for (const fn of this.undo.splice(0).reverse()) {
      try {
        fn();
      } catch (error) {
        console.error(error);
      }
    }
  }
}

/** A route's mount(root, ctx) from setup(root, ctx, life); mount returns the view's dispose. */
export function defineView(setup) {
  return (root, ctx) => {
    const life = new Lifetime();
    setup(root, ctx, life);
    return () => life.dispose();
  };
}

/** What the previous view left to say (ctx.flash), as the first message of this one. */
export function flashNote(ctx) {
  return ctx.flash ? h('p', { class: 'message info', role: 'status' }, ctx.flash) : null;
}
