"""The bot's chat wording in English: the one catalog every other language translates.

Grouped by where the words are used. `{name}` fields are filled by `text(key, name=...)`;
`{count}` by `text(key, count=...)`, which also picks a `Plural` form.
"""

from __future__ import annotations

from bot.core.texts import packs as pack_texts
from bot.core.texts.catalog import Catalog, Plural

MESSAGES: Catalog = {
    # -- shared -----------------------------------------------------------------------------
    "error.sorry": "Sorry, something went wrong on my side. Please try again in a moment.",
    "error.unknown_reason": "unknown reason",
    "access.private": "Sorry, this bot is private. Ask its operator to let you in.",
    "access.banned": "Sorry, you are blocked from using this bot.",
    "note": "Note: {note}",
    # -- help and commands ------------------------------------------------------------------
    "help": (
        "I make photoshoots of you. Three steps:\n"
        "1. Send me {min_photos}-{max_photos} photos of yourself (face clearly visible, varied "
        "backgrounds, at least {min_side} px on the short side). {photo_hint}\n"
        "2. /train man (or woman, person, boy, girl, dog, cat …) trains your personal model.\n"
        "3. /imagine astronaut on the moon makes pictures of you.\n\n"
        "More: /models lists your models (and picks the active one), /status shows what is "
        "running, /cancel stops running jobs or drops photos not yet trained, /delete removes "
        "everything of yours, here and on the image service, /language changes the language "
        "I speak with you. /credits shows your balance and what things cost.\n"
        "Tip: short prompts work best. Add --no <things> to keep things out of the picture."
    ),
    "help.packs": (
        "Photoshoots: /packs shows curated packs for your model (say, 28 corporate headshots); "
        "pick one and confirm. /train man travel trains and runs the Travel pack in one go."
    ),
    "command.packs": "photoshoot packs for your model: pick one and make it",
    "command.shoot": "make a photoshoot pack: /shoot travel",
    "command.imagine": "make pictures of you: /imagine astronaut on the moon",
    "command.train": "train your model from the photos you sent: /train man",
    "command.train_in_group": "train your model (in a private chat with me)",
    "command.models": "your models; choose the active one",
    "command.status": "what is running",
    "command.cancel": "stop running jobs or drop photos not yet trained",
    "command.delete": "delete your photos, models and images",
    "command.help": "how this works",
    "command.credits": "your balance, the prices and your last movements",
    "command.buy": "buy credits",
    "command.language": "choose the language I speak with you",
    # -- photos -----------------------------------------------------------------------------
    "photo.subject": "This photo",
    "photo.subject_named": "“{filename}”",
    "photo.file_too_large": (
        "{subject} is {megabytes:.0n} MB; the limit is 20 MB. Export it smaller and send it again."
    ),
    "photo.corrupt": (
        "{subject} is damaged or incomplete (maybe the upload was cut off). Please send it again."
    ),
    "photo.too_small": (
        "{subject} is {width}×{height} px; training needs at least {min_side} px on the short "
        "side. Chat apps shrink photos: send it as a file (uncompressed) instead."
    ),
    "photo.unreadable_colours": (
        "{subject} uses a colour format I can't read. Please send a JPEG or PNG."
    ),
    "photo.too_many_pixels": (
        "{subject} has too many pixels (the limit is {megapixels} megapixels). Export it "
        "smaller, e.g. 4000 px on the long side, and send it again."
    ),
    "photo.not_an_image": (
        "{subject} is not an image I can read. Please send a photo as JPEG or PNG."
    ),
    "photo.not_an_image_heic": (
        "{subject} is not an image I can read. HEIC photos can't be read here: send it as JPEG "
        "(on iPhone: Settings › Camera › Formats › Most Compatible) or as a PNG."
    ),
    "photo.not_a_photo": (
        "{subject} is not a photo ({content_type}). Please send JPEG or PNG photos."
    ),
    "photo.not_downloaded": "{subject} could not be downloaded. Please send it again.",
    "photo.duplicate": "You already sent this photo; skipped.",
    "photo.over_cap": (
        "Your set already has {max_photos} photos, the most one training uses. "
        "/train now, or /cancel to start over."
    ),
    "photos.not_enough": Plural(
        one="You have {count} photo in your set; training needs at least {min_photos} (10-20 "
        "varied ones work best: different days, light and angles). Send {missing} more, then "
        "/train <class>.",
        other="You have {count} photos in your set; training needs at least {min_photos} (10-20 "
        "varied ones work best: different days, light and angles). Send {missing} more, then "
        "/train <class>.",
    ),
    "photos.summary": Plural(
        one="{count} photo received: {parts}. {next_step}",
        other="{count} photos received: {parts}. {next_step}",
    ),
    "photos.lone_refusal": "{refusal} {next_step}",
    "photos.added": "{added} added ({total} of {max_photos} in your set)",
    "photos.none_added": "none added ({total} of {max_photos} in your set)",
    "photos.refused.too_small": Plural(
        one="{count} too small (send it as a file to keep full size)",
        other="{count} too small (send those as files to keep full size)",
    ),
    "photos.refused.not_an_image": Plural(
        one="{count} not a readable image (send JPEG or PNG)",
        other="{count} not readable images (send JPEG or PNG)",
    ),
    "photos.refused.corrupt": Plural(
        one="{count} damaged or cut off (send it again)", other="{count} damaged or cut off"
    ),
    "photos.refused.file_too_large": Plural(one="{count} over 20 MB", other="{count} over 20 MB"),
    "photos.refused.too_many_pixels": Plural(
        one="{count} over {megapixels} megapixels", other="{count} over {megapixels} megapixels"
    ),
    "inspect.line": "{subject}: {problem}",
    "inspect.no_face": "no face found: send a photo where your face is clearly visible",
    "inspect.multiple_faces": "more than one person: crop to just you",
    "inspect.face_too_small": "the face is small: send a closer photo or crop it",
    "inspect.blurry": "blurry: resend a sharper one",
    "inspect.too_dark": "too dark: send one taken in better light",
    "inspect.too_bright": "overexposed: send one with less glare",
    "inspect.clipped": "parts are pure black or white: send one with softer light",
    "inspect.near_duplicate": "nearly the same as another photo: vary pose or place",
    "inspect.sunglasses": "sunglasses: send one without them",
    "inspect.hat": "a hat: send one without it",
    "inspect.funny_face": "a funny face: send one with a natural expression",
    "inspect.wrong_class": "looks like something else than what you will train",
    "photos.refused.unsuitable": Plural(
        one="{count} unsuitable (see below)", other="{count} unsuitable (see below)"
    ),
    "photos.refused.duplicate": Plural(
        one="{count} duplicate skipped", other="{count} duplicates skipped"
    ),
    "photos.refused.over_cap": Plural(
        one="{count} over the {max_photos}-photo limit",
        other="{count} over the {max_photos}-photo limit",
    ),
    "photos.send_more": ("Send {missing} more (at least {min_photos}), then /train <class>."),
    "photos.set_full": "Your set is full: /train <class> now (e.g. /train woman).",
    "photos.ready": ("Ready: /train <class> (e.g. /train man), or add up to {room} more."),
    "photos.save_failed": "Sorry, I could not save those photos. Please send them again.",
    # -- training ---------------------------------------------------------------------------
    "train.no_class": (
        "What is in the photos? Say it with the command, e.g. /train man (one of: {classes})."
    ),
    "train.not_a_class": "“{word}” is not a class word. Use one word such as {examples}.",
    "train.private_only": (
        "Training happens in a private chat with me, so your photos stay yours."
    ),
    "train.uploading_already": (
        "Your photos are already being uploaded for training. Wait a moment."
    ),
    "train.started_message": (
        "Training {model} started. It takes a while; I'll message you when it's done."
    ),
    "train.weak_all_similar": (
        "Note: your {count} photos are nearly the same picture, so the model will learn one "
        "pose and one light. For a better likeness, /cancel and send photos with other "
        "angles, expressions, clothes and backgrounds."
    ),
    "train.weak_few_poses": (
        "Note: only {distinct} of your {count} photos differ; the others nearly repeat them. "
        "At least {wanted} different poses (angles, expressions, backgrounds) give a better "
        "likeness: /cancel to add some."
    ),
    "train.started_dm": "Training {model} started. It takes a while; I'll DM you when it's done.",
    "train.started_here": (
        "Training {model} started. It takes a while; I'll tell you when it's done."
    ),
    "tune.uploading": "Training of {model}: uploading photos…",
    "tune.in_progress": ("Training of {model}: in progress. I'll message you when it's ready."),
    "tune.almost_done": (
        "Training of {model}: in progress, almost done. I'll message you when it's ready."
    ),
    "tune.minutes_left": (
        "Training of {model}: in progress, about {minutes} min left. "
        "I'll message you when it's ready."
    ),
    "tune.done": "Training of {model}: done.",
    "tune.failed": "Training of {model}: failed.",
    "tune.ready": (
        "Your model {model} is ready and active. Try: /imagine portrait in a sunlit studio"
    ),
    "tune.failed_because": (
        "Training of {model} failed: {reason}. Your photos are kept; send /train again to retry."
    ),
    "class.man": "man",
    "class.woman": "woman",
    "class.boy": "boy",
    "class.girl": "girl",
    "class.person": "person",
    "class.child": "child",
    "class.baby": "baby",
    "class.dog": "dog",
    "class.cat": "cat",
    "class.couple": "couple",
    # -- packs ------------------------------------------------------------------------------
    "packs.heading": "Photoshoot packs for {model} ({class_name}):",
    "packs.item": Plural(
        one="{number}. {title}: {count} image",
        other="{number}. {title}: {count} images",
    ),
    "packs.item_priced": Plural(
        one="{number}. {title}: {count} image, ${price}",
        other="{number}. {title}: {count} images, ${price}",
    ),
    "packs.makes": Plural(
        one="It makes {count} image of {model}.",
        other="It makes {count} images of {model}.",
    ),
    "packs.confirm": Plural(one="Make {count} image", other="Make {count} images"),
    "packs.none_for_class": "There is no photoshoot pack for a {class_name} yet.",
    "packs.unknown": "There is no pack called “{pack}”. /packs lists them.",
    "packs.unsupported": ("{title} has no prompts for a {class_name}. Packs that have: {packs}."),
    "packs.unsupported_none": "none yet",
    "shoot.usage": "Which pack? /shoot <number or name>; /packs lists them.",
    "shoot.started": Plural(
        one="{title}: making {count} image of {model}. It arrives here as it is ready.",
        other="{title}: making {count} images of {model}. They arrive here as they are ready.",
    ),
    "shoot.queued": Plural(
        one="{model} is still training: {title} ({count} image) starts when it is done.",
        other="{model} is still training: {title} ({count} images) starts when it is done.",
    ),
    "shoot.waiting": "{title} starts when {model} is trained.",
    "shoot.progress": "{title}: {ready} of {count} ready",
    "shoot.done": Plural(
        one="{title} is done: {count} image.",
        other="{title} is done: {count} images. The ZIP has them all at full size.",
    ),
    "shoot.failed": "{title} failed: {reason}",
    "shoot.model_gone": "its model is gone or its training failed.",
    "shoot.no_prompts": "the image service made no prompts for this pack.",
    "shoot.liked": "Liked: packs are ordered by likes like yours.",
    "shoot.unliked": "Like taken back.",
    "shoot.not_yours": "That image is not from one of your shoots.",
    "cancel.shoot": "shoot {title} ({ready} of {count} images made are kept)",
    "button.like": "♡ {number}",
    "button.liked": "♥ {number}",
    "button.more_like_this": "✨ More like {number}",
    # -- imagining --------------------------------------------------------------------------
    "imagine.empty": "What should I make? For example: /imagine astronaut on the moon",
    "imagine.still_training": "Your model is still training. I'll message you when it's ready.",
    "consent.question": (
        "Before your first training, please confirm: the photos you send are of yourself, or "
        "of someone who agreed to this, and that person is an adult (18 or older)."
    ),
    "consent.how": "Press the button below to confirm (in the console: /consent).",
    "consent.given": "Thank you, noted. Now send /train again to start your training.",
    "button.consent": "✅ I confirm",
    "safety.blocked": (
        "Sorry, I can't make pictures from this prompt. Please try a different one."
    ),
    "imagine.no_model": (
        "You have no model yet. In a private chat with me, send 4-20 photos of "
        "yourself, then /train man (or woman, person, ...)."
    ),
    "generation.queued": "Queued: waiting for a free GPU…",
    "generation.running": "Generating…",
    "generation.progress": "Generating… {progress:%}",
    "generation.done": "Done.",
    "generation.failed": "Failed.",
    "generation.failed_because": (
        "Sorry, that image failed: {reason}. Try again, perhaps with a different prompt."
    ),
    "images.not_yours": "That is not one of your images.",
    "images.not_ready": "Those images are not ready yet.",
    "images.deleted": "Those images were deleted. /imagine makes new ones.",
    "images.no_such_number": "There is no image #{number} in that set.",
    # -- prompts ----------------------------------------------------------------------------
    "prompt.one_model_only": (
        "Only one personal model per image: SDXL combines one LoRA + token per prompt. "
        "Keep a single <lora:ID:strength> tag."
    ),
    "prompt.empty": (
        "What should I imagine? For example: /imagine {token} {class_name} as an astronaut"
    ),
    "prompt.short_is_better": (
        "Tip: short prompts work best with a personal SDXL model, e.g. "
        "“{token} {class_name} as an astronaut”."
    ),
    "prompt.unreadable_tag": "I couldn't read that tag; write it as <lora:ID:0.8>.",
    "prompt.not_your_model": "You can only use your own models; see /models for their IDs.",
    "prompt.bad_strength": (
        "The strength in <lora:{ref}:…> must be a number from 0 to 2, e.g. 0.8."
    ),
    "prompt.strength_clamped": "Model strength {strength:n} is outside 0–2; used {used:n}.",
    "prompt.pick_a_model": (
        "Pick the model to use in /models (or name it in the prompt as <lora:ID>)."
    ),
    "prompt.no_model": (
        "You have no model yet: send 4-20 photos of yourself, then /train <class> (e.g. man)."
    ),
    "prompt.tags_removed": "Removed {tags}: only your own model (see /models) is used.",
    "prompt.embeddings_removed": (
        "Removed {names}: SD1.5 embeddings that do nothing on SDXL (they'd be read as plain words)."
    ),
    "prompt.not_english": (
        "Tip: the image model understands English best. Your prompt is used as you wrote it; "
        "in English it would come out closer to what you mean."
    ),
    "prompt.negative_shortened": (
        "Your negative prompt was long; I used its first {words} words "
        "(short negatives work better with SDXL)."
    ),
    # -- models -----------------------------------------------------------------------------
    "models.none": "You have no models yet. Send photos, then /train man (or woman, person …).",
    "models.heading": "Your models:",
    "models.line": "#{id} {model}: {state}",
    "models.lora": ", <lora:{backend_id}:0.8>",
    "models.active": " (active)",
    "models.not_trained": "{model} is not trained yet ({state}).",
    "models.no_such_number": "You have no model with that number. /models lists yours.",
    "models.now_active": "{model} is now your active model.",
    "tune_state.creating": "uploading",
    "tune_state.training": "training",
    "tune_state.trained": "ready",
    "tune_state.failed": "failed",
    "tune_state.cancelled": "cancelled",
    # -- languages -------------------------------------------------------------------------
    "language.current": "I speak {language} with you ({reason}).",
    "language.reason.chosen": "your choice",
    "language.reason.platform": "your app's language",
    "language.reason.default": "the bot's default language",
    "language.usage": (
        "To change it: /language <code> (one of: {codes}), or /language auto to follow your "
        "app's language."
    ),
    "language.now": "From now on I speak {language} with you.",
    "language.now_automatic": "I follow your app's language again: {language}.",
    "language.unknown": "I don't speak “{wanted}”. I speak: {languages}.",
    "button.language_automatic": "Automatic (your app's language)",
    # -- status, cancel, delete -------------------------------------------------------------
    "status.pending_photos": Plural(
        one="Photos waiting for /train: {count}.", other="Photos waiting for /train: {count}."
    ),
    "status.training": "Training {model}.",
    "status.training_until": "Training {model}, ready about {eta:time} UTC.",
    "status.image_waiting": Plural(
        one="Image #{id} “{prompt}”: {count} ahead of it.",
        other="Image #{id} “{prompt}”: {count} ahead of it.",
    ),
    "status.image_next": "Image #{id} “{prompt}”: next in line.",
    "status.idle": "Nothing is running.",
    "status.active_model": "Active model: {model}.",
    "cancel.done": "Cancelled: {jobs}.",
    "cancel.image": "image #{id}",
    "cancel.training": "training of {model}",
    "cancel.dropped_photos": Plural(
        one="Dropped your {count} pending photo. Send new ones whenever you like.",
        other="Dropped your {count} pending photos. Send new ones whenever you like.",
    ),
    "cancel.nothing": "Nothing to cancel: no job is running and no photos are waiting.",
    "delete.question": (
        "This deletes all your photos, models and images, here and on the image service."
    ),
    "delete.kept": Plural(
        one="The image service could not delete {count} item right now, so I "
        "kept everything here for the moment. Send /delete again in a few minutes.",
        other="The image service could not delete {count} items right now, so I "
        "kept everything here for the moment. Send /delete again in a few minutes.",
    ),
    "delete.done": (
        "Deleted {photos} photos, {models} models and "
        "{jobs} image jobs, here and on the image service."
    ),
    "retention.removed": (
        "Welcome back! You had not used me for {days} days, so, to keep nothing of yours "
        "longer than needed, I deleted your media here and on the image service: "
        "{photos} photos, {models} models and {images} image sets. Your settings and "
        "credits are kept; send new photos whenever you like."
    ),
    # -- buttons ----------------------------------------------------------------------------
    "button.reroll": "🔁 Reroll",
    "button.full_size": "📁 Full size",
    "button.more_like": "✨ #{number}",
    "button.upscale": "⬆ #{number}",
    "button.use_model": "Use {model}",
    "button.delete_everything": "Yes, delete everything",
    "button.gone": "This button no longer works. Send the command again.",
    "button.not_yours": (
        "These buttons belong to whoever asked for these pictures. Use /imagine to make your own."
    ),
    "button.reroll_started": "A new set is on its way.",
    "button.more_like_started": "More like #{number} on its way.",
    "button.sending_files": "Sending the full-size files…",
    "button.training_started": "Training started.",
    "button.deleted": "Deleted.",
    # -- plain text: what it would make --------------------------------------------------
    "imagine.preview": Plural(
        one="Make {count} image of “{prompt}” with {model}?",
        other="Make {count} images of “{prompt}” with {model}?",
    ),
    "imagine.preview_price": "It costs {price}; you have {balance}.",
    "button.make_it": "✨ Make them",
    "button.make_it_for": "✨ Make them ({price})",
    "button.making": "On its way.",
    # -- credits ----------------------------------------------------------------------------
    "credits.amount": Plural(one="{count} credit", other="{count} credits"),
    "credits.free": "Nothing is charged here: this bot is free to use.",
    "credits.exempt": (
        "Nothing is charged for you here (admins and the operator's console never pay)."
    ),
    "credits.balance": "Your balance: {balance}.",
    "credits.prices": Plural(
        one="Training a model costs {training}; an image {set_price}.",
        other="Training a model costs {training}; a set of {count} images {set_price}.",
    ),
    "credits.movements": "Last movements (UTC):",
    "credits.buy_hint": "/buy gets more credits.",
    "credits.ask_admin": "Ask the bot's operator for more credits.",
    "credits.short_training": "Training a model costs {price}; you have {balance}. {buy}",
    "credits.short_images": Plural(
        one="An image costs {price}; you have {balance}. {buy}",
        other="A set of {images} images costs {price}; you have {balance}. {buy}",
    ),
    "credits.released": Plural(
        one="The {count} credit held for it is back in your balance: it cost you nothing.",
        other="The {count} credits held for it are back in your balance: it cost you nothing.",
    ),
    "ledger.line": "{when:date} {when:time} {amount:+n} {what}",
    "ledger.welcome": "welcome credits",
    "ledger.grant": "from the bot's operator",
    "ledger.take": "taken by the bot's operator",
    "ledger.purchase": "bought",
    "ledger.refund": "purchase refunded",
    "ledger.hold": "for",
    "ledger.capture": "spent on",
    "ledger.release": "given back for",
    "ledger.for_job": "{what} {job}",
    "ledger.with_reference": "{what} ({reference})",
    "ledger.job.tune": "training #{id}",
    "ledger.job.generation": "image set #{id}",
    "ledger.job.photoshoot": "shoot #{id}",
    "ledger.hold_state.hold": ", held until it is delivered",
    "ledger.hold_state.capture": ", delivered",
    "ledger.hold_state.release": ", given back",
    "limits.running_prompts": Plural(
        one="You have {count} image set on its way; {limit} at a time is the limit. Send it "
        "again once it is done.",
        other="You have {count} image sets on their way; {limit} at a time is the limit. Send "
        "it again once one is done.",
    ),
    "limits.running_trainings": Plural(
        one="You already have a training running; one at a time is the limit. /status shows it.",
        other="You have {count} trainings running, the most at a time. /status shows them.",
    ),
    "limits.images_per_day": Plural(
        one="That would make {wanted} more images today; the limit is {count} a day and you "
        "have made {used}. It resets at 00:00 UTC, in {resets_in}.",
        other="That would make {wanted} more images today; the limit is {count} a day and you "
        "have made {used}. It resets at 00:00 UTC, in {resets_in}.",
    ),
    "limits.trainings_per_day": Plural(
        one="The bot has started its {count} training for today, its daily limit. It resets "
        "at 00:00 UTC, in {resets_in}; please try again then. Your photos are kept.",
        other="The bot has started its {count} trainings for today, its daily limit. It resets "
        "at 00:00 UTC, in {resets_in}; please try again then. Your photos are kept.",
    ),
    "limits.duration": "{hours} h {minutes} min",
    # -- buying credits ---------------------------------------------------------------------
    "buy.not_needed": "Nothing is charged for you here, so there is nothing to buy.",
    "buy.nothing_on_sale": "No credits are on sale here. Ask the bot's operator.",
    "buy.not_here": "Credits are bought in Telegram (/buy) or Discord (/buy), not here.",
    "buy.packages": "Credits, paid with Telegram Stars. Tap a package for its invoice:",
    "buy.package": "{credits} for {stars} ⭐",
    "buy.invoice_title": "{credits}",
    "buy.invoice_description": (
        "{credits} for this photoshoot bot: training a model costs {training}, an image {image}."
    ),
    "buy.invoice_sent": "Here is your invoice.",
    "buy.thanks": "Thank you! {credits} added; your balance is {balance}.",
    "buy.already_credited": "This payment is in your balance already ({credits}).",
    "buy.refunded_unmatched": (
        "I could not match this payment to an offer of mine, so your {stars} Stars were "
        "refunded. Send /buy for the current offers."
    ),
    "buy.refunded_blocked": (
        "This account cannot buy credits here, so your {stars} Stars were refunded."
    ),
    "checkout.unknown": "This invoice is not one of mine. Send /buy for a new one.",
    "checkout.stale": "This offer has expired or its price changed. Send /buy for a new one.",
    "checkout.blocked": "This account cannot buy credits here.",
    "discord.buy": "Buy credits: pick a package below (paid through Discord).",
    "discord.credited": "Thank you! {credits} added; your balance is {balance}.",
    # -- admins -----------------------------------------------------------------------------
    "admin.only": "That command is for the bot's admins.",
    "admin.private_only": "Admin commands work only in a private chat with me.",
    "admin.help": (
        "Admin commands:\n"
        "/grant <user> <credits> [reason], /take <user> <credits> [reason]\n"
        "/ban <user> [reason], /unban <user>\n"
        "/user <user>, /stats\n"
        "/refund <payment> (a reference from /user, e.g. telegram:…)\n"
        "A user is platform:id (telegram:123, discord:456), #<number> (as /user shows), or an "
        "id on this platform."
    ),
    "admin.not_a_user": "“{who}” is not a user. Write telegram:123, discord:456 or #12.",
    "admin.unknown_user": "I don't know {who}: they have to write to the bot first.",
    "admin.bad_amount": "The amount must be a whole number from 1 to {most}.",
    "admin.granted": "Gave {credits} to {who}; their balance is {balance}.",
    "admin.taken": "Took {credits} from {who}; their balance is {balance}.",
    "admin.take_too_much": "{who} has only {balance}; take at most that.",
    "admin.ban_admin": "{who} is an admin. Take them out of ADMIN_IDS first.",
    "admin.banned": "Banned {who}. Cancelled: {jobs}.",
    "admin.banned_idle": "Banned {who}. Nothing of theirs was running.",
    "admin.already_banned": "{who} is banned already (since {since:date}).",
    "admin.unbanned": "Unbanned {who}.",
    "admin.not_banned": "{who} is not banned.",
    "admin.user": (
        "{who}: user #{id}, “{name}”.\n"
        "Balance: {balance}. Models: {models}; image sets: {sets} ({running} running).\n"
        "{banned}"
    ),
    "admin.user_banned": "Banned since {since:date} by {actor}.",
    "admin.user_not_banned": "Not banned.",
    "admin.stats": (
        "Users: {users} ({users_today} new today).\n"
        "Trainings: {tunes_today} today, {tunes} in all; images: {images_today} today, "
        "{images} in all.\n"
        "Failed jobs: {failed_today} today, {failed} in all. Queue: {queue} waiting.\n"
        "Credits sold: {sold_today} today, {sold} in all; spent: {spent_today} today, {spent} in "
        "all; given by admins: {granted}."
    ),
    "admin.no_payment": "No purchase has the reference {reference}.",
    "admin.refunded_before": "That purchase was refunded already, on {when:date}.",
    "admin.refund_spent": (
        "{who} has only {balance} of the {credits} bought; a refund takes them all back. "
        "Nothing was refunded."
    ),
    "admin.refund_elsewhere": (
        "I can't refund {platform} purchases here: Telegram Stars are refunded by my Telegram "
        "side (while it runs), Discord purchases in Discord."
    ),
    "admin.refund_refused": "The refund was refused: {reason}",
    "admin.refunded": "Refunded {reference} to {who} and took back {credits}; balance {balance}.",
    # -- the image service ------------------------------------------------------------------
    "backend.failed": "The image service failed. Please try again in a few minutes.",
    "backend.refused_key": (
        "The image service refused our key. The bot operator has to fix the setup."
    ),
    "backend.not_found": "The image service no longer knows this model or job.",
    "backend.rejected": "The image service rejected the request: {reason}",
    "backend.busy": "The image service is busy right now. Your request is kept; it will go on.",
    "backend.trouble": (
        "The image service is having trouble. Your request is kept; it will go on."
    ),
    # -- Telegram ---------------------------------------------------------------------------
    "telegram.photo_hint": (
        "Send them right here, best as files (📎 › File) so they keep their full size; "
        "albums are fine."
    ),
    "telegram.help_in_group": (
        "/imagine <prompt> makes pictures of you here once your model is trained. "
        "Training happens in a private chat with me:"
    ),
    "telegram.train_in_group": (
        "Training happens in a private chat with me, so your photos stay yours. "
        "Tap below, send your photos there, then /train."
    ),
    "telegram.open_private_chat": "Open a private chat with me",
    "telegram.pick_a_class": "What is in the photos? Tap one (or type e.g. /train woman Anna).",
    "telegram.unknown_command": "I don't know that command. /help lists what I understand.",
    "telegram.message_too_old": (
        "That message is too old to use its buttons. Send the command again."
    ),
    "telegram.receiving_photos": "Receiving your photos…",
    "telegram.photo_too_big": (
        "{subject} is {size}; Telegram lets me download at most 20 MB. "
        "Export it smaller (e.g. 4000 px on the long side) and send it again."
    ),
    "telegram.megabytes": "{megabytes:.0n} MB",
    "telegram.over_20_mb": "over 20 MB",
    "telegram.result_hint": (
        "Image #{id}: Tap ✨ #n for more like one of them, 🔁 for a new set, "
        "📁 for full-size files."
    ),
    # -- Discord ----------------------------------------------------------------------------
    "discord.photo_hint": (
        "Attach them to /train (up to 10 at a time; only you see them), or drop them into a "
        "DM with me."
    ),
    "discord.command.help": "What this bot does and how to use it",
    "discord.command.train": "Train your model from photos of you",
    "discord.command.train.class": "what is in the photos",
    "discord.command.train.name": "a name for this model (optional)",
    "discord.command.train.photo": (
        "4-20 photos of you, at least 1024 px; more in photo2 … photo10 or the DM"
    ),
    "discord.command.imagine": "Make pictures of you",
    "discord.command.imagine.prompt": "what to make, e.g. astronaut on the moon",
    "discord.command.models": "Your models; choose the active one",
    "discord.command.status": "What is running",
    "discord.command.cancel": "Stop running jobs, or drop photos not trained",
    "discord.command.delete": "Delete your photos, models and images",
    "discord.command.credits": "Your balance, the prices and your last movements",
    "discord.command.buy": "Buy credits",
    "discord.command.admin": "Admin commands (admins only, in a DM)",
    "discord.command.admin.command": "e.g. grant discord:123 50, ban discord:123, stats",
    "discord.command.language": "Choose the language I speak with you",
    "discord.command.language.language": "the language; leave it out to see the current one",
    "discord.name.help": "help",
    "discord.name.train": "train",
    "discord.name.imagine": "imagine",
    "discord.name.models": "models",
    "discord.name.status": "status",
    "discord.name.cancel": "cancel",
    "discord.name.delete": "delete",
    "discord.name.language": "language",
    "discord.name.credits": "credits",
    "discord.name.buy": "buy",
    "discord.name.admin": "admin",
    "discord.command.packs": "Photoshoot packs for your model: pick one, then make it",
    "discord.command.shoot": "Make a photoshoot pack of your model",
    "discord.command.shoot.pack": "the pack's number in /packs, or its name",
    "discord.name.packs": "packs",
    "discord.name.shoot": "shoot",
    "discord.option.pack": "pack",
    "discord.pick_pack": "Choose a pack",
    "discord.more_like_this": "✨ More like this",
    "discord.option.class": "class",
    "discord.option.name": "name",
    "discord.option.prompt": "prompt",
    "discord.option.language": "language",
    "discord.option.command": "command",
    "discord.needs_photos_here": Plural(
        one="You have {count} of the {min_photos} photos training needs. Drop {missing} or "
        "more here (as files, at least 1024 px) and I'll start training your {class_name} "
        "model right away.",
        other="You have {count} of the {min_photos} photos training needs. Drop {missing} or "
        "more here (as files, at least 1024 px) and I'll start training your {class_name} "
        "model right away.",
    ),
    "discord.needs_photos_in_dm": Plural(
        one="You have {count} of the {min_photos} photos training needs. Drop {missing} or "
        "more into a DM with me (as files, at least 1024 px) and I'll start training your "
        "{class_name} model right away.",
        other="You have {count} of the {min_photos} photos training needs. Drop {missing} or "
        "more into a DM with me (as files, at least 1024 px) and I'll start training your "
        "{class_name} model right away.",
    ),
    "discord.asked": "“{prompt}”",
    "discord.new_set_of": "🔁 New set of “{prompt}”",
    "discord.more_like": "✨ More like #{number} of “{prompt}”",
    "discord.upscaling": "⬆ Upscaling #{number} of “{prompt}”",
    "discord.result_caption": "“{prompt}” (image #{id}, seed {seed})",
    # -- the console ------------------------------------------------------------------------
    "console.photo_hint": "Here, give their paths: /photos ./me/*.jpg or /photos ./folder",
    "console.extras": "Console extras: /wait waits for running jobs (for scripts); /quit leaves.",
    "console.welcome": "Photoshoot bot console. /help lists the commands; Ctrl-D quits.",
    "console.waiting": "Waiting for running jobs (Ctrl-C leaves; they resume next time)…",
    "console.unknown_command": "Unknown command {command}. /help lists what I understand.",
    "console.photos_usage": "Give photo files or a folder: /photos ./me/*.jpg",
    "console.unreadable_file": "Cannot read {path}: {reason}.",
    "console.models_usage": "Choose a model by its number: /models 3",
    "console.models_hint": "Choose the active one with /models <number>.",
    "console.packs_hint": "See one with /packs <number>.",
    "telegram.shot_buttons": "♡ likes a shot (packs are ordered by likes); ✨ makes more like it.",
    "console.shoot_hint": "{label}: /shoot {pack}",
    "console.shots_saved": Plural(
        one="{title}: {count} image saved:",
        other="{title}: {count} images saved:",
    ),
    "console.shot_line": "  {path} (/like {shot}, /more {shot})",
    "console.archive_saved": "ZIP of {title}: {path}",
    "console.no_jobs": "No job is running.",
    "console.delete_question": (
        "This deletes all your photos, models and images, here and on the image "
        "service. Send /delete confirm (or /delete again) to go ahead."
    ),
    "console.images_saved": Plural(
        one="Image #{id} “{prompt}”: {count} saved:", other="Image #{id} “{prompt}”: {count} saved:"
    ),
    "console.make_it": "Send /imagine {prompt} to make them.",
}
MESSAGES.update(pack_texts.MESSAGES)  # kept apart (shipped packs' words), read like the rest
