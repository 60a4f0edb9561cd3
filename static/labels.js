// The words the apps show for the hub's values, each written once.

const STATUS = {
  scheduled: 'Scheduled',
  completed: 'Completed',
  cancelled: 'Cancelled',
  no_show: 'No-show',
};

/** An appointment's status as people read it. */
export function statusLabel(status) {
  return STATUS[status] || status;
}

/** "First Last" of a patient (or anyone with first_name and last_name). */
export function personName(person) {
  return `${person.first_name} ${person.last_name}`;
}

/** "Dr First Last"; '' when there is no doctor yet. */
export function doctorName(doctor) {
  return doctor ? `Dr ${personName(doctor)}` : '';
}
