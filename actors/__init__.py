"""The actor runtime (pykka actors on asyncio) and the actors of the supervision tree."""
